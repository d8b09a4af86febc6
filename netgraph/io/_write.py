"""The one output contract: where every netgraph command writes, and how.

Contract
--------
Every command that writes (``repair``, ``compact``, ``plot``, ``train``, ``ablate``,
``demo``) checks its destination with :func:`output_path` (a file) or :func:`output_dir`
(a folder) *before* it computes anything, and writes with :func:`atomic_write` (or
:func:`atomic_dir`).  Then:

* only a regular file is ever written or replaced: a directory, a device node
  (``/dev/null``), a FIFO or a socket is refused, ``--force`` or not;
* an existing output is refused unless ``force``; an input is never the output, not even
  with ``force`` (``inputs=``);
* a trailing slash, a missing folder, a folder that is not writable or a read-only file
  system is one :class:`~netgraph.errors.NetgraphError` line (the CLI: exit 2);
* the data goes to a temporary file beside the destination, named
  ``.netgraph-<name>.<pid>.<random>.tmp``, flushed and fsynced, checked (``check=``) and
  only then renamed over the destination (``os.replace``, atomic on one file system): any
  failure — a full disk, a failed check, Ctrl-C — removes the temporary and leaves the
  destination as it was.  A temporary left by a killed process (``kill -9``) is removed
  by the next write into that folder (its process id is gone);
* the file gets the mode an ordinary ``open(path, "w")`` would give it (``0o666 & ~umask``).

``netgraph``'s metadata for a file whose own container cannot hold it without breaking
``model.load_state_dict(torch.load(path))`` goes into a sidecar ``<path>.netgraph.json``
(:func:`sidecar_path`, :func:`read_sidecar`), which records the SHA-256 of the file it
describes so that a stale sidecar is never believed.

Only the standard library is imported at module level; torch is imported by
:func:`save_checkpoint` alone.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from typing import Any, Callable, Iterable, Mapping

from ..errors import NetgraphError

__all__ = [
    "output_path",
    "output_dir",
    "atomic_write",
    "atomic_dir",
    "remove_stale_temporaries",
    "sidecar_path",
    "read_sidecar",
    "sidecar_payload",
    "save_checkpoint",
]

TMP_PREFIX = ".netgraph-"
TMP_SUFFIX = ".tmp"
SIDECAR_SUFFIX = ".netgraph.json"
MAX_SIDECAR_BYTES = 64 * 2**20  # a stored topology of a large model is a few MB
_LEGACY_AGE_S = 3600.0  # ``.netgraph-XXXXXXXX.tmp`` (no pid) older than this is stale
_PID_REUSE_AGE_S = 86400.0  # a temporary of a live pid older than this belongs to a reused pid


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def output_path(path: str | os.PathLike, *, force: bool = False, inputs: Iterable[str | os.PathLike] = (),
                what: str = "output") -> str:
    """Check that ``path`` is a place where a new file may be written; return it as ``str``.

    Parameters
    ----------
    path : str or PathLike
        The destination file.
    force : bool
        Allow replacing an existing regular file (never an input, never a non-file).
    inputs : iterable of paths
        Files the command reads; the output may be none of them (compared with
        ``os.path.samefile``, so a hard link or another spelling is caught too).
    what : str
        How the message names the destination (``"output"``, ``"-o"``, ``"--out"``).

    Returns
    -------
    str
        ``os.fspath(path)``.

    Raises
    ------
    NetgraphError
        Empty path, trailing slash, an existing directory / device / FIFO / socket, an
        existing file without ``force``, an input, a missing folder, a folder that is not
        a directory or cannot be written.  One line each.
    """
    out = os.fspath(path)
    if not out:
        raise NetgraphError(f"{what}: the path is empty; give a file name")
    if out.endswith(("/", os.sep)):
        raise NetgraphError(f"{out}: {what} ends with a slash, so it names a folder; give a file name")
    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise NetgraphError(f"{out}: cannot inspect the {what} ({_os_reason(exc)})") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise NetgraphError(f"{out}: the {what} is {_kind(st.st_mode)}; netgraph writes only regular files")
        for src in inputs:
            try:
                same = os.path.samefile(out, os.fspath(src))
            except OSError:
                same = False
            if same:
                raise NetgraphError(f"{out}: the {what} is the input {os.fspath(src)!r}; "
                                    "netgraph never writes over its input; choose another file")
        if not force:
            raise NetgraphError(f"{out}: the {what} exists; choose another file or pass --force to replace it")
    _check_folder(out, what)
    return out


def _check_folder(out: str, what: str) -> str:
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.exists(folder):
        raise NetgraphError(f"{out}: the {what}'s folder {os.path.dirname(out) or '.'!r} does not exist; create it first")
    if not os.path.isdir(folder):
        raise NetgraphError(f"{out}: the {what}'s folder {os.path.dirname(out)!r} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        ro = _read_only_fs(folder)
        raise NetgraphError(f"{out}: cannot write into {os.path.dirname(out) or '.'!r} "
                            f"({'read-only file system' if ro else 'permission denied'})")
    return folder


def _read_only_fs(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover - platform without statvfs
        return False


def output_dir(path: str | os.PathLike, *, force: bool = False, inputs: Iterable[str | os.PathLike] = (),
               what: str = "output folder") -> str:
    """Check that ``path`` is a place for a new output folder; return it as ``str``.

    A missing folder is fine (its parent must exist and be writable); an existing empty
    folder is fine; an existing non-empty folder needs ``force``; an existing non-folder,
    or a folder that holds one of ``inputs``, is refused.

    Raises
    ------
    NetgraphError
        One line, as :func:`output_path`.
    """
    out = os.fspath(path)
    if not out:
        raise NetgraphError(f"{what}: the path is empty; give a folder name")
    bare = out.rstrip("/" + os.sep) or out
    try:
        st = os.stat(bare)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise NetgraphError(f"{out}: cannot inspect the {what} ({_os_reason(exc)})") from None
    if st is None:
        _check_folder(bare, what)
        return out
    if not stat.S_ISDIR(st.st_mode):
        raise NetgraphError(f"{out}: the {what} exists and is not a folder")
    real = os.path.realpath(bare)
    for src in inputs:
        if os.path.realpath(os.fspath(src)).startswith(real + os.sep):
            raise NetgraphError(f"{out}: the {what} holds the input {os.fspath(src)!r}; choose another folder")
    if os.listdir(bare) and not force:
        raise NetgraphError(f"{out}: the {what} exists and is not empty; choose another or pass --force")
    if not os.access(bare, os.W_OK | os.X_OK):
        raise NetgraphError(f"{out}: cannot write into the {what} "
                            f"({'read-only file system' if _read_only_fs(bare) else 'permission denied'})")
    return out


# -- temporaries --------------------------------------------------------------------------

def _tmp_name(folder: str, name: str, kind: str = TMP_SUFFIX) -> str:
    stem = name[:80]  # keep the temporary's name within NAME_MAX
    return os.path.join(folder, f"{TMP_PREFIX}{stem}.{os.getpid()}.{secrets.token_hex(4)}{kind}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _stale(name: str, full: str) -> bool:
    core = name[len(TMP_PREFIX):]
    for suffix in (TMP_SUFFIX, ".tmpdir"):
        if core.endswith(suffix):
            core = core[: -len(suffix)]
            break
    else:
        return False
    parts = core.rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 8:
        if not _pid_alive(int(parts[1])):
            return True
        try:  # the pid may have been reused by an unrelated process: a day is long enough
            return time.time() - os.lstat(full).st_mtime > _PID_REUSE_AGE_S
        except OSError:
            return False
    # the earlier pattern (tempfile.mkstemp: ".netgraph-XXXXXXXX.tmp") carries no pid
    try:
        return time.time() - os.lstat(full).st_mtime > _LEGACY_AGE_S
    except OSError:
        return False


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the temporaries netgraph left in ``folder`` when its process was killed.

    Only names of netgraph's own pattern (``.netgraph-<name>.<pid>.<8 hex>.tmp`` or
    ``.tmpdir``) whose process no longer exists (or that are older than a day: the pid was
    reused) are removed, and the pid-less ``.netgraph-XXXXXXXX.tmp`` of earlier versions once
    older than an hour.

    Returns
    -------
    list of str
        The paths removed.
    """
    folder = os.fspath(folder) or "."
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        full = os.path.join(folder, name)
        if not _stale(name, full):
            continue
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
            removed.append(full)
        except OSError:
            pass
    return removed


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any], *,
                 check: Callable[[str], Any] | None = None) -> None:
    """Call ``write(tmp)`` then move the temporary file to ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        The destination; check it with :func:`output_path` first (``atomic_write`` itself
        refuses only a destination that is not a regular file).
    write : callable
        ``write(tmp_path)`` creates the file's content at ``tmp_path``.
    check : callable, optional
        ``check(tmp_path)`` runs after the data is on disk and before the rename; an
        exception it raises cancels the write (the destination is untouched).

    Raises
    ------
    NetgraphError
        Any ``OSError`` while writing (full disk, read-only file system, ...), as one line.
        Other exceptions from ``write`` / ``check`` propagate unchanged; in every case
        the temporary is removed.
    """
    out = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(out))
    try:
        st = os.stat(out)
        if not stat.S_ISREG(st.st_mode):
            raise NetgraphError(f"{out}: the output is {_kind(st.st_mode)}; netgraph writes only regular files")
    except FileNotFoundError:
        pass
    remove_stale_temporaries(folder)
    tmp = _tmp_name(folder, os.path.basename(out))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _file_mode())
        os.close(fd)
        os.chmod(tmp, _file_mode())  # open() applies the umask already; be explicit
        try:
            write(tmp)
            os.chmod(tmp, _file_mode())  # a writer may have replaced the file (safetensors makes it 0600)
        except RuntimeError as exc:  # torch's C++ writer reports a full disk as RuntimeError
            if _nearly_full(folder):
                raise OSError(errno.ENOSPC, "No space left on device") from None
            raise OSError(errno.EIO, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]) from None
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, FileNotFoundError) and not os.path.isdir(folder):
            raise NetgraphError(f"{out}: the folder {os.path.dirname(out) or '.'!r} does not exist") from None
        if exc.errno == errno.ENOSPC:
            raise NetgraphError(f"{out}: no space left on the device; nothing was written") from None
        if exc.errno == errno.EROFS:
            raise NetgraphError(f"{out}: read-only file system; nothing was written") from None
        raise NetgraphError(f"{out}: cannot write ({_os_reason(exc)}); nothing was written") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(folder)


def _nearly_full(folder: str) -> bool:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # pragma: no cover
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_dir(path: str | os.PathLike, write: Callable[[str], Any], *, force: bool = False) -> None:
    """Build a folder with ``write(tmp_dir)`` then move it to ``path`` in one rename.

    An existing ``path`` (allowed by :func:`output_dir`, i.e. empty or ``force``) is
    replaced only after ``write`` succeeded; on failure the temporary folder is removed
    and ``path`` is as it was.

    Raises
    ------
    NetgraphError
        Any ``OSError`` while writing or moving, as one line.
    """
    out = os.fspath(path).rstrip("/" + os.sep) or os.fspath(path)
    parent = os.path.dirname(os.path.abspath(out))
    remove_stale_temporaries(parent)
    tmp = _tmp_name(parent, os.path.basename(out), ".tmpdir")
    old = None
    try:
        os.mkdir(tmp, 0o777)
        write(tmp)
        if os.path.isdir(out):
            if os.listdir(out) and not force:
                raise NetgraphError(f"{out}: the output folder exists and is not empty; pass --force to replace it")
            old = _tmp_name(parent, os.path.basename(out) + ".old", ".tmpdir")
            os.rename(out, old)
        os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(out):
            os.rename(old, out)
            old = None
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else _os_reason(exc)
        raise NetgraphError(f"{out}: cannot write the folder ({reason}); nothing was written") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(out):
            os.rename(old, out)
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- the sidecar --------------------------------------------------------------------------

def sidecar_path(path: str | os.PathLike) -> str:
    """``<path>.netgraph.json``: netgraph's metadata for a file that cannot carry it."""
    return os.fspath(path) + SIDECAR_SUFFIX


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_payload(data_path: str, meta: Mapping[str, Any]) -> str:
    """The sidecar's JSON text for ``meta`` describing the file now at ``data_path``."""
    return json.dumps({"netgraph_sidecar": 1, "sha256": _sha256(data_path), "netgraph": dict(meta)})


def read_sidecar(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """netgraph's metadata for ``path`` from its sidecar, if one describes this very file.

    Returns
    -------
    (meta, note)
        ``meta`` is the metadata dict, or ``None`` when there is no sidecar or it does not
        describe the file; ``note`` says why a sidecar that exists was not used.
    """
    side = sidecar_path(path)
    try:
        st = os.stat(side)
    except OSError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return None, f"{side}: not a regular file; ignored"
    if st.st_size > MAX_SIDECAR_BYTES:
        return None, f"{side}: {st.st_size} bytes, over the {MAX_SIDECAR_BYTES}-byte limit; ignored"
    try:
        with open(side, "rb") as fh:
            obj = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None, f"{side}: not valid JSON; ignored"
    if not isinstance(obj, dict) or not isinstance(obj.get("netgraph"), dict) or not isinstance(obj.get("sha256"), str):
        return None, f"{side}: not a netgraph sidecar; ignored"
    try:
        digest = _sha256(os.fspath(path))
    except OSError:
        return None, None
    if digest != obj["sha256"]:
        return None, f"{side}: describes another version of {os.fspath(path)} (SHA-256 differs); ignored"
    return obj["netgraph"], None


# -- checkpoints --------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, state_dict: Mapping[str, Any], meta: Mapping | None = None,
                    *, format: str | None = None):
    """Write ``state_dict`` (+ netgraph ``meta``) atomically and read it back strictly.

    ``format``: ``"torch"`` (``{"state_dict": ..., "netgraph": meta}`` via torch.save) or
    ``"safetensors"`` (meta as JSON under the ``netgraph`` metadata key); default from the
    extension (``.safetensors`` → safetensors, anything else → torch).  The file is checked
    with the strict loader *before* it replaces ``path``.

    Returns
    -------
    Checkpoint
        The file as read back.
    """
    import numpy as np
    import torch

    from ._checkpoint import load_checkpoint

    out = os.fspath(path)
    fmt = format or ("safetensors" if out.endswith(".safetensors") else "torch")
    if fmt not in ("torch", "safetensors"):
        raise ValueError(f"format must be 'torch' or 'safetensors', got {fmt!r}")
    sd = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v.detach().cpu())
          for k, v in state_dict.items()}
    if fmt == "torch":
        obj = {"state_dict": sd, "netgraph": dict(meta)} if meta else sd
        atomic_write(out, lambda tmp: torch.save(obj, tmp), check=load_checkpoint)
    else:
        from safetensors.torch import save_file

        md = {"netgraph": json.dumps(meta)} if meta else None
        sd = {k: v.contiguous() for k, v in sd.items()}
        atomic_write(out, lambda tmp: save_file(sd, tmp, metadata=md), check=load_checkpoint)
    return load_checkpoint(out)
