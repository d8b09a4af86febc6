"""The one output contract (issue 9 item 4, issue 10 "Output places"), as a table.

Rows are output places, columns are the commands that write.  For every refused place:
exit 2, one stderr line ``netgraph: error: ...``, no traceback, the place unchanged (a FIFO
stays a FIFO, a device stays a device, an existing file keeps its bytes) and no file left
behind (no partial output, no ``.netgraph-*`` temporary).  The oracle is the file system
itself (``os.lstat``, the bytes, the folder listing), not netgraph's own messages.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

from netgraph.cli import main
from netgraph.io import atomic_write, output_path, remove_stale_temporaries
from netgraph.errors import NetgraphError

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _ckpt(path):
    """A small prune-format MLP with one dead weight (fc1 unit 3 feeds nothing)."""
    w1 = torch.zeros(4, 3)
    w1[0, 0] = w1[3, 1] = 1.0
    w2 = torch.zeros(2, 4)
    w2[0, 0] = 1.0
    torch.save({"0.weight_orig": torch.randn(4, 3), "0.weight_mask": (w1 != 0).float(), "0.bias": torch.zeros(4),
                "2.weight": w2, "2.bias": torch.zeros(2)}, path)
    return path


MODEL = ["--model", "netgraph.testing.models:mlp", "--model-kwargs", '{"widths": [3, 4, 2]}', "--input-shape", "1,3"]


def _has_mlp_factory() -> bool:
    try:
        from netgraph.testing import models

        m = models.mlp(widths=(3, 4, 2))
        return isinstance(m, nn.Module) and set(m.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    except Exception:
        return False


# -- the writers: argv for (input, out, force) -------------------------------------------

def _repair(src, out, force):
    return ["repair", str(src), "-o", str(out), *(["--force"] if force else [])]


def _repair_model(src, out, force):
    return ["repair", str(src), *MODEL, "-o", str(out), *(["--force"] if force else [])]


def _compact(src, out, force):
    return ["compact", str(src), *MODEL, "-o", str(out), *(["--force"] if force else [])]


def _plot(src, out, force):
    return ["plot", "masks", str(src), "-o", str(out), *(["--force"] if force else [])]


def _train(src, out, force):
    return ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out", str(out),
            *(["--force"] if force else [])]


FILE_WRITERS = {"repair": _repair, "repair-model": _repair_model, "compact": _compact, "plot": _plot,
                "train": _train}
SUFFIX = {"plot": ".png"}


def _ablate(out, force):
    return ["ablate", "--datasets", "synthetic-sbu", "--epochs", "1", "--no-progress", "--out", str(out),
            *(["--force"] if force else [])]


def _demo(out, force):
    return ["demo", "--quick", "--out", str(out), *(["--force"] if force else [])]


DIR_WRITERS = {"ablate": _ablate, "demo": _demo}


# -- the places: setup(tmp, suffix) -> (out, force, kept) ----------------------------------
# ``kept`` is a function returning a fingerprint of the place that must not change.

def _fingerprint(path):
    def fp():
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        data = None
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as fh:
                data = fh.read()
        return (stat.S_IFMT(st.st_mode), st.st_rdev, data)
    return fp


def _existing_file(tmp, sfx):
    out = tmp / f"old{sfx}"
    out.write_bytes(b"precious")
    return out, False, _fingerprint(out)


def _input_itself(tmp, sfx):
    out = tmp / "in.pt"
    return out, True, _fingerprint(out)  # even with --force


def _hard_link_to_input(tmp, sfx):
    out = tmp / "alias.pt"
    os.link(tmp / "in.pt", out)
    return out, True, _fingerprint(out)


def _missing_folder(tmp, sfx):
    out = tmp / "missing" / f"x{sfx}"
    return out, False, _fingerprint(tmp / "missing")


def _directory(tmp, sfx):
    out = tmp / f"adir{sfx}"
    out.mkdir()
    return out, True, lambda: sorted(os.listdir(out))


def _trailing_slash(tmp, sfx):
    return str(tmp / f"new{sfx}") + "/", True, _fingerprint(tmp / f"new{sfx}")


def _fifo(tmp, sfx):
    out = tmp / f"pipe{sfx}"
    os.mkfifo(out)
    return out, True, _fingerprint(out)


def _device(tmp, sfx):
    out = tmp / f"null{sfx}"
    try:
        os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc.strerror})")
    return out, True, _fingerprint(out)


def _read_only_folder(tmp, sfx):
    if IS_ROOT:
        pytest.skip("root writes into a folder without write permission; the read-only file system row covers it")
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return ro / f"x{sfx}", False, lambda: sorted(os.listdir(ro))


PLACES = {
    "existing-file-no-force": (_existing_file, "exists"),
    "the-input-even-with-force": (_input_itself, "input"),
    "hard-link-to-the-input": (_hard_link_to_input, "input"),
    "missing-folder": (_missing_folder, "does not exist"),
    "a-directory": (_directory, "directory"),
    "trailing-slash": (_trailing_slash, "slash"),
    "a-fifo": (_fifo, "FIFO"),
    "a-device-node": (_device, "device"),
    "read-only-folder": (_read_only_folder, "cannot write"),
}


def _leftovers(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        out += [os.path.join(root, n) for n in files + dirs if n.startswith(".netgraph-")]
    return out


@pytest.fixture()
def tmp(tmp_path):
    _ckpt(tmp_path / "in.pt")
    return tmp_path


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("writer", list(FILE_WRITERS))
def test_file_output_places_are_refused_in_one_line(tmp, writer, place, capsys):
    if writer in ("repair-model", "compact") and not _has_mlp_factory():
        pytest.skip("netgraph.testing.models.mlp(widths=...) is not available")
    if writer == "train" and place in ("the-input-even-with-force", "hard-link-to-the-input"):
        pytest.skip("train reads no checkpoint: it has no input to protect")
    setup, words = PLACES[place]
    out, force, fingerprint = setup(tmp, SUFFIX.get(writer, ".pt"))
    before = fingerprint()
    listing = sorted(os.listdir(tmp))
    rc = main(FILE_WRITERS[writer](tmp / "in.pt", out, force))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("netgraph: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    if writer in ("repair", "repair-model", "compact"):  # these name the rule (others may refuse earlier)
        assert words in err, err
    assert fingerprint() == before
    assert sorted(os.listdir(tmp)) == listing and not _leftovers(tmp)


@pytest.mark.parametrize("writer", list(DIR_WRITERS))
@pytest.mark.parametrize("place", ["non-empty-folder", "a-file", "missing-parent", "a-fifo"])
def test_folder_output_places_are_refused_in_one_line(tmp, writer, place, capsys):
    if place == "non-empty-folder":
        out = tmp / "report"
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif place == "a-file":
        out = tmp / "report"
        out.write_text("a file")
    elif place == "missing-parent":
        out = tmp / "missing" / "report"
    else:
        out = tmp / "report"
        os.mkfifo(out)
    before = _fingerprint(out)() if not out.is_dir() else sorted(os.listdir(out))
    listing = sorted(os.listdir(tmp))
    rc = main(DIR_WRITERS[writer](out, False))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("netgraph: error:") and err.count("\n") == 1, err
    after = _fingerprint(out)() if not out.is_dir() else sorted(os.listdir(out))
    assert after == before and sorted(os.listdir(tmp)) == listing and not _leftovers(tmp)


@pytest.mark.parametrize("writer", ["repair", "repair-model", "compact", "plot"])
def test_force_replaces_a_regular_file_atomically_with_the_umask_mode(tmp, writer, capsys):
    if writer in ("repair-model", "compact") and not _has_mlp_factory():
        pytest.skip("netgraph.testing.models.mlp(widths=...) is not available")
    out = tmp / f"old{SUFFIX.get(writer, '.pt')}"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    old = os.umask(0o022)
    try:
        assert main(FILE_WRITERS[writer](tmp / "in.pt", out, True)) == 0, capsys.readouterr().err
    finally:
        os.umask(old)
    assert out.read_bytes() != b"old" and stat.S_IMODE(os.stat(out).st_mode) == 0o644
    assert not _leftovers(tmp)


def test_a_failed_check_leaves_no_output(tmp, monkeypatch, capsys):
    """The "audits differently" refusal happens before the rename: no OUT on disk."""
    import netgraph.io._repair as r

    real = r.audit
    calls = {"n": 0}

    def lying_audit(graph, *a, **k):  # the 3rd audit is the check of the written file
        calls["n"] += 1
        rep = real(graph, *a, **k)
        if calls["n"] == 3:
            return _tampered(rep)
        return rep

    monkeypatch.setattr(r, "audit", lying_audit)
    out = tmp / "out.pt"
    assert main(_repair(tmp / "in.pt", out, False)) == 2
    err = capsys.readouterr().err
    assert "audits differently" in err and err.count("\n") == 1
    assert not out.exists() and not _leftovers(tmp)


def _tampered(report):
    import dataclasses

    s = dataclasses.replace(report.summary, kept=report.summary.kept + 1)
    return dataclasses.replace(report, summary=s)


@pytest.mark.parametrize("err_no, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                           (errno.EIO, "cannot write")])
def test_a_write_error_is_one_line_and_leaves_nothing(tmp, monkeypatch, capsys, err_no, words):
    """A full disk, a read-only file system, an I/O error in the middle of the write."""
    real = torch.save

    def failing_save(obj, f, *a, **k):
        real(obj, f, *a, **k)  # a partial file exists, then the device fails
        raise OSError(err_no, os.strerror(err_no))

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp / "out.pt"
    assert main(_repair(tmp / "in.pt", out, False)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err
    assert not out.exists() and not _leftovers(tmp)


def _mount_tmpfs(where, size="64k", ro=False) -> str | None:
    where.mkdir()
    opts = f"size={size}" + (",ro" if ro else "")
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount not available ({exc})"
    if proc.returncode != 0:
        return f"cannot mount a tmpfs here: {proc.stderr.strip()[:120]}"
    return None


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_real_full_or_read_only_tmpfs(tmp, kind, capsys):
    mnt = tmp / "mnt"
    why = _mount_tmpfs(mnt, size="16k", ro=(kind == "read-only"))
    if why:
        pytest.skip(why)
    try:
        big = tmp / "big.pt"
        torch.save({"0.weight": torch.ones(64, 64), "1.weight": torch.ones(8, 64)}, big)  # 17 KB > 16 KB
        rc = main(_repair(big if kind == "full" else tmp / "in.pt", mnt / "out.pt", False))
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1, err
        assert ("no space left" if kind == "full" else "read-only") in err
        assert os.listdir(mnt) == []
    finally:
        import gc

        gc.collect()  # a file object torch left open on the failed write keeps the mount busy
        if subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def _write_text(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def test_stale_temporaries_of_dead_processes_are_removed(tmp):
    """What ``kill -9`` leaves behind (a temporary of a process that no longer exists) is
    removed by the next write into the folder; a live process's temporary is not."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp / f".netgraph-out.pt.{dead.pid}.0123abcd.tmp"
    stale.write_bytes(b"x" * 1000)
    live = tmp / f".netgraph-out.pt.{os.getpid()}.0123abcd.tmp"
    live.write_bytes(b"y")
    other = tmp / ".netgraph-notes.txt"  # not our pattern
    other.write_text("keep")
    atomic_write(tmp / "a.txt", lambda p: _write_text(p, "a"))
    assert not stale.exists() and live.exists() and other.exists()
    os.utime(live, (time.time() - 2 * 86400,) * 2)  # a live pid, but two days old: a reused pid
    assert remove_stale_temporaries(tmp) == [str(live)]
    assert remove_stale_temporaries(tmp) == []


@pytest.mark.slow
def test_kill_9_during_repair_never_leaves_a_corrupt_output_or_a_temporary(tmp_path):
    """A bounded kill loop: ``repair`` of a ~40 MB checkpoint killed at growing delays."""
    src = tmp_path / "big.pt"
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(1000, 3000), nn.ReLU(), nn.Linear(3000, 3000), nn.ReLU(), nn.Linear(3000, 10))
    for i in (0, 2, 4):
        prune.random_unstructured(m[i], "weight", amount=0.9)
    torch.save(m.state_dict(), src)
    out = tmp_path / "out.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "netgraph", "repair", str(src), "-o", str(out), "--force"]
    t_full = time.monotonic()
    subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=True)
    t_full = time.monotonic() - t_full
    def content(path):  # the zip's inner folder is named after the temporary: compare tensors
        sd = torch.load(path, weights_only=True)
        return {k: v.numpy().tobytes() for k, v in sd.items()}

    good = content(out)
    out.unlink()
    kills = 0
    for frac in (0.5, 0.7, 0.8, 0.9, 0.95):
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(frac * t_full)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        if out.exists():  # either the complete old/new output or nothing
            assert content(out) == good
    # the next run removes what the killed ones left
    subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=True)
    assert content(out) == good and not _leftovers(tmp_path)
    assert kills >= 1


def test_output_path_api_contract(tmp):
    """The library function the commands share, directly."""
    assert output_path(tmp / "new.pt") == str(tmp / "new.pt")
    with pytest.raises(NetgraphError, match="exists"):
        output_path(tmp / "in.pt")
    with pytest.raises(NetgraphError, match="input"):
        output_path(tmp / "in.pt", force=True, inputs=[tmp / "in.pt"])
    assert output_path(tmp / "in.pt", force=True) == str(tmp / "in.pt")
    with pytest.raises(NetgraphError, match="empty"):
        output_path("")


def test_audit_writes_nothing(tmp, capsys):
    listing = sorted(os.listdir(tmp))
    assert main(["audit", str(tmp / "in.pt")]) == 0
    assert sorted(os.listdir(tmp)) == listing
