"""CLI glue for ``--model PKG.MODULE:FACTORY``: build the model, load the checkpoint, trace.

``audit``, ``repair`` and ``compact`` call :func:`audit_with_model` and
:func:`repair_with_model` with their parsed arguments (fields: ``path``, ``model``,
``input_shape``, ``format``, ``fail_on_dead``, ``mode``, ``verify``, ``output``,
``scores``, ``force``).  The checkpoint is read with netgraph's strict loaders (never
unpickling code); torch's prune format (``X_orig`` + ``X_mask``) is re-applied to the
factory's model with ``torch.nn.utils.prune.custom_from_mask``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Mapping

from ..errors import BadCheckpoint, NetgraphError, VerificationFailed

__all__ = ["audit_with_model", "repair_with_model", "load_model", "parse_input_shape"]

TOLERANCE = 1e-9


def _read_tensors(path: str) -> dict[str, Any]:
    """The checkpoint's tensors as torch tensors, through the strict loader."""
    import torch

    from ..io import _checkpoint

    ckpt = _checkpoint.load_checkpoint(path)
    return {k: torch.from_numpy(v.copy()) for k, v in ckpt.tensors.items()}


def _factory(spec: str):
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise NetgraphError(f"--model {spec!r} must look like pkg.module:factory (a callable returning the nn.Module)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NetgraphError(f"--model {spec!r}: cannot import {module_name!r} ({exc}); "
                            "is it installed or on PYTHONPATH?") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise NetgraphError(f"--model {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise NetgraphError(f"--model {spec!r}: {attr!r} is not callable")
    return obj


def load_model(spec: str, path: str):
    """Build the model from ``spec`` and load the checkpoint at ``path`` into it."""
    import torch
    import torch.nn as nn
    from torch.nn.utils import prune

    try:
        model = _factory(spec)()
    except NetgraphError:
        raise
    except Exception as exc:
        raise NetgraphError(f"--model {spec!r}: calling the factory failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, nn.Module):
        raise NetgraphError(f"--model {spec!r} returned a {type(model).__name__}, expected an nn.Module")
    tensors = _read_tensors(path)
    for key in sorted(k for k in tensors if k.endswith("_mask")):
        base = key[: -len("_mask")]
        if base + "_orig" not in tensors:
            continue
        qual, _, pname = base.rpartition(".")
        try:
            mod = model.get_submodule(qual)
        except AttributeError:
            raise BadCheckpoint(f"{path}: mask {key!r} names module {qual!r}, which the model from {spec} lacks") from None
        if not isinstance(getattr(mod, pname, None), torch.Tensor):
            raise BadCheckpoint(f"{path}: mask {key!r} names parameter {pname!r}, which module {qual!r} lacks")
        if tuple(getattr(mod, pname).shape) != tuple(tensors[key].shape):
            raise BadCheckpoint(f"{path}: mask {key!r} has shape {tuple(tensors[key].shape)} but the model's "
                                f"{base!r} has {tuple(getattr(mod, pname).shape)}")
        prune.custom_from_mask(mod, pname, tensors[key] != 0)
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise BadCheckpoint(f"{path}: does not fit the model from {spec}: "
                            f"{lines[0] if lines else str(exc).splitlines()[0]}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {result.missing_keys[:3]}" + (" ..." if len(result.missing_keys) > 3 else ""))
        if result.unexpected_keys:
            parts.append(f"unexpected {result.unexpected_keys[:3]}" + (" ..." if len(result.unexpected_keys) > 3 else ""))
        raise BadCheckpoint(f"{path}: does not fit the model from {spec}: {'; '.join(parts)}")
    with torch.no_grad():  # recompute prune's weight attributes from the loaded tensors
        for mod in model.modules():
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    hook(mod, None)
    return model.eval()


def parse_input_shape(text: str | None, model) -> tuple[int, ...]:
    """``"1,3,224,224"`` → ``(1, 3, 224, 224)``; without it, ``(1, in_features)`` for a model
    whose first layer is a Linear."""
    import torch.nn as nn

    if text is None:
        first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))), None)
        if isinstance(first, nn.Linear):
            return (1, first.in_features)
        raise NetgraphError("--input-shape is needed for this model (e.g. --input-shape 1,3,224,224); "
                            "only models that start with a Linear layer have an obvious one")
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise NetgraphError(f"--input-shape {text!r} must be positive integers separated by commas, e.g. 1,3,224,224")
    return shape


def _prepare(args):
    from ..torch._trace import trace_model

    model = load_model(args.model, args.path)
    shape = parse_input_shape(getattr(args, "input_shape", None), model)
    return model, shape, trace_model(model, shape)


def _emit(args, payload: Mapping, text: str) -> None:
    if getattr(args, "format", "text") == "json":
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(text)


def audit_with_model(args) -> int:
    """``netgraph audit CKPT --model M``: trace the model, print the audit; 1 if dead and asked."""
    _, _, traced = _prepare(args)
    report = traced.audit(source=args.path)
    _emit(args, report.to_dict(), report.to_text())
    return 1 if getattr(args, "fail_on_dead", False) and report.has_dead else 0


def _check_output(args) -> None:
    out = args.output
    if os.path.exists(out) and not getattr(args, "force", False):
        if os.path.samefile(out, args.path):
            raise NetgraphError(f"{out}: refusing to overwrite the input; choose another -o or pass --force")
        raise NetgraphError(f"{out}: exists; choose another -o or pass --force to replace it")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise NetgraphError(f"{out}: folder {folder!r} does not exist")


def _save(path: str, state_dict: Mapping[str, Any], traced, report, meta: Mapping[str, Any]) -> None:
    """Write the repaired state_dict with the topology of the repaired model as data, so
    ``netgraph audit OUT`` gives the exact audit without the model code (a compacted model's
    state_dict no longer fits the factory's model)."""
    from ..io._checkpoint import save_checkpoint
    from .._spec import graph_to_spec

    bias_keys = {}
    for name, (module, _) in traced.params.items():
        key = f"{module}.bias" if module else "bias"
        if key in state_dict:
            bias_keys[name] = key
    full = {"topology": graph_to_spec(traced.graph, bias_keys), "audit": report.to_dict(), **meta}
    save_checkpoint(path, dict(state_dict), full, format="torch")


def repair_with_model(args) -> int:
    """``netgraph repair|compact CKPT --model M -o OUT``: prune, reconnect or compact; 1 if
    ``--verify`` finds an output changed by more than 1e-9 (relative, float64)."""
    import torch

    from ..torch._repair import compact_model, prune_model, reconnect_model, verify
    from ..torch._trace import trace_model

    mode = getattr(args, "mode", "prune")
    if mode not in ("prune", "reconnect", "compact"):
        raise NetgraphError(f"--mode {mode!r} is unknown; use prune, reconnect or compact")
    _check_output(args)
    model, shape, traced = _prepare(args)
    before = traced.audit(source=args.path)
    extra: dict[str, Any] = {}
    if mode == "prune":
        repaired = prune_model(model, traced)
        state = repaired.state_dict()
    elif mode == "reconnect":
        scores = _read_tensors(args.scores) if getattr(args, "scores", None) else None
        repaired = reconnect_model(model, traced, scores=scores)
        state = repaired.state_dict()
    else:
        result = compact_model(model, traced)
        repaired, state = result.model, result.state_dict
        extra = result.to_dict()
    diff = None
    if getattr(args, "verify", False):
        if mode == "reconnect":
            print("netgraph: note: --verify skipped: reconnect changes the function by design", file=sys.stderr)
        else:
            diff = verify(model, repaired, shape)
            if not diff <= TOLERANCE:
                raise VerificationFailed(
                    f"{mode} changed the outputs: largest relative difference {diff:.3g} > {TOLERANCE:g}; "
                    f"nothing was written to {args.output}")
    after_traced = trace_model(repaired, shape)
    after = after_traced.audit(source=args.output)
    tensors = {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    _save(args.output, tensors, after_traced, after,
          {"repair": mode, "input": os.path.abspath(args.path), "model": args.model, **({"compact": extra} if extra else {})})
    payload = {"output": args.output, "mode": mode, "before": before.to_dict(), "after": after.to_dict(),
               "max_relative_difference": diff}
    payload.update({"compact": extra} if extra else {})
    b, a = before.summary, after.summary
    lines = [f"{mode}: kept {b.kept:,} -> {a.kept:,}; effective {b.effective:,} -> {a.effective:,}; "
             f"dead {b.dead:,} -> {a.dead:,} (constant {a.constant:,})"]
    if extra:
        lines.append(f"parameters {extra['params_before']:,} -> {extra['params_after']:,}; "
                     f"measured CPU speedup {extra['speedup']:.2f}x "
                     f"({1e3 * extra['seconds_before']:.3f} ms -> {1e3 * extra['seconds_after']:.3f} ms, median)")
    if diff is not None:
        lines.append(f"verified: largest relative output difference {diff:.3g} (tolerance {TOLERANCE:g})")
    if mode == "reconnect" and a.kept < b.kept:
        print(f"netgraph: warning: only {a.kept - b.effective:,} unkept weights join an accessible unit to a "
              f"coaccessible one; {b.kept - a.kept:,} of the budget could not be re-spent", file=sys.stderr)
    lines.append(f"wrote {args.output}")
    _emit(args, payload, "\n".join(lines))
    return 0
