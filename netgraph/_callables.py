"""User code by name: ``pkg.module:name`` or ``path/to/file.py:name`` → the callable.

Contract
--------
:func:`load_callable` finds a module as ``python -m`` would: the current folder first (a
same-named module imported earlier from another folder is dropped), then what is installed;
``path/to/file.py:name`` loads that file, with its folder importable (as ``python file.py``).
Dotted names after the colon walk attributes (``mod:Factory.build``).  Every failure is one
:class:`netgraph.errors.NetgraphError` line that names the option and the spec, including an
import that raises or calls ``sys.exit``.  The CLI's ``--model`` and ``--dataset`` and the
trainer use this one resolver.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from .errors import NetgraphError

__all__ = ["load_callable", "first_line"]


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (``sys.exit`` calls said as such), cut to ``limit``."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _import_from_cwd(module_name: str):
    """Import ``module_name`` with the current folder first on ``sys.path`` (as ``python -m``)."""
    cwd = os.getcwd()
    top = module_name.split(".")[0]
    local = os.path.isfile(os.path.join(cwd, top + ".py")) or os.path.isfile(os.path.join(cwd, top, "__init__.py"))
    if local:
        if sys.path[:1] != [cwd]:
            sys.path.insert(0, cwd)
        cached = sys.modules.get(top)
        where = os.path.dirname(os.path.abspath(getattr(cached, "__file__", "") or "")) if cached else None
        if cached is not None and where not in (cwd, os.path.join(cwd, top)):
            for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                del sys.modules[name]  # a same-named module from another folder (an earlier run)
        importlib.invalidate_caches()
    return importlib.import_module(module_name)


def _import_file(file_path: str, option: str):
    full = os.path.abspath(file_path)
    if not os.path.isfile(full):
        raise NetgraphError(f"{option}: {file_path!r} is not a file")
    folder = os.path.dirname(full)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # as `python file.py`: its siblings are importable
    name = "netgraph_user_" + os.path.splitext(os.path.basename(full))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise NetgraphError(f"{option}: cannot load {file_path!r} as Python code")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_callable(spec: str, option: str = "--model", what: str = "factory"):
    """The callable named by ``spec`` (see the module contract).

    Parameters
    ----------
    spec : str
        ``pkg.module:name`` or ``path/to/file.py:name``.
    option : str
        The option the spec came from, for messages (``--model``, ``--dataset``).
    what : str
        What the callable is, for messages (``factory``, ``loader``).

    Raises
    ------
    NetgraphError
        Malformed spec, module not found or failing on import, attribute missing or not callable.
    """
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise NetgraphError(f"{option} {spec!r} must look like module:{what} or path/to/file.py:{what}")
    try:
        if where.endswith(".py") or os.sep in where or "/" in where:
            module = _import_file(where, option)
        else:
            module = _import_from_cwd(where)
    except NetgraphError:
        raise
    except ImportError as exc:
        raise NetgraphError(f"{option} {spec!r}: cannot import {where!r} ({exc}); looked in the current folder "
                            f"({os.getcwd()}) and the installed packages; or give path/to/file.py:{what}") from None
    except (Exception, SystemExit) as exc:
        raise NetgraphError(f"{option} {spec!r}: importing {where!r} failed ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise NetgraphError(f"{option} {spec!r}: {where!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise NetgraphError(f"{option} {spec!r}: {attr!r} is not callable")
    return obj
