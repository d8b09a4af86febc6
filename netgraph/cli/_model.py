"""``--model SPEC``: build the user's model, fit the checkpoint into it, trace it.

=============================  ==================================================
``build_model``                ``module:factory`` / ``path/file.py:factory`` + JSON kwargs
``load_model``                 the checkpoint into the model (keys mapped) → :class:`UserModel`
``prepare_model``              the above + the example input + the trace (for any command)
``audit_with_model``           ``netgraph audit CKPT --model M``
``repair_with_model``          ``netgraph repair|compact CKPT --model M -o OUT``
=============================  ==================================================

The model is found as ``python -m`` finds one: the current folder first, then what is
installed; ``path/to/file.py:factory`` loads that file (its folder is importable too).
The checkpoint is read with netgraph's strict loader (never unpickling code).  Its keys
are matched to the model's: the wrappers ``state_dict`` / ``model`` / ``model_state_dict``
(the loader unwraps them) and the prefixes ``module.`` (DataParallel / DDP),
``_orig_mod.`` (``torch.compile``) and ``model.`` (Lightning) are recognised when exactly
one reading makes every key fit, with a one-line note; ``--key-prefix`` names another.
torch's prune format (``X_orig`` + ``X_mask``) is re-applied with
``torch.nn.utils.prune.custom_from_mask``.  Repaired and compacted state_dicts are written
by :func:`netgraph.io._repair.write_like`, the same writer the checkpoint-only path uses.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping

from .._callables import first_line, load_callable
from ..errors import BadCheckpoint, NetgraphError, VerificationFailed
from ._keys import KNOWN_PREFIXES, match_prefix, short_list
from ._options import parse_input_shape

__all__ = ["UserModel", "build_model", "load_model", "prepare_model", "audit_with_model", "repair_with_model",
           "KNOWN_PREFIXES", "TOLERANCE"]

TOLERANCE = 1e-9


# -- the factory ---------------------------------------------------------------------------

def _factory(spec: str):
    return load_callable(spec, "--model", "factory")


_first_line = first_line


def _kwargs(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        kwargs = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NetgraphError(f"--model-kwargs {text[:80]!r} is not JSON ({_first_line(exc)}); "
                            "give an object such as '{\"num_classes\": 10}'") from None
    if not isinstance(kwargs, dict):
        raise NetgraphError(f"--model-kwargs must be a JSON object of keyword arguments, got a {type(kwargs).__name__}")
    return kwargs


def build_model(spec: str, model_kwargs: str | Mapping | None = None):
    """Call the factory named by ``spec`` with ``model_kwargs`` (JSON text or a mapping).

    Raises
    ------
    NetgraphError
        Not importable, not callable, the call failed (``SystemExit`` included), or it
        returned something other than an ``nn.Module``.  One line each.
    """
    import torch.nn as nn

    kwargs = dict(model_kwargs) if isinstance(model_kwargs, Mapping) else _kwargs(model_kwargs)
    factory = _factory(spec)
    try:
        model = factory(**kwargs)
    except (Exception, SystemExit) as exc:
        raise NetgraphError(f"--model {spec!r}: calling the factory failed ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise NetgraphError(f"--model {spec!r} returned a {type(model).__name__}, expected an nn.Module")
    return model


# -- fitting the checkpoint ----------------------------------------------------------------

@dataclass
class UserModel:
    """The user's model with the checkpoint loaded, and how the checkpoint was read.

    ``prefix`` is what was stripped from the file's keys; ``prune_keys`` the model-side
    names stored in torch's prune format; ``notes`` one-line remarks for stderr.
    """

    model: Any
    ckpt: Any
    spec: str
    prefix: str = ""
    prune_keys: frozenset = frozenset()
    notes: list = field(default_factory=list)
    shape: tuple = ()
    traced: Any = None


def load_model(spec: str, path: str, *, model_kwargs: str | Mapping | None = None,
               key_prefix: str | None = None) -> UserModel:
    """Build the model from ``spec`` and load the checkpoint at ``path`` into it.

    Returns
    -------
    UserModel
        ``.model`` in eval mode, prune-format weights re-applied.

    Raises
    ------
    BadCheckpoint
        The keys or shapes do not fit the model (the first unmatched keys are named).
    """
    import torch
    from torch.nn.utils import prune

    from ..io._repair import read_checkpoint

    model = build_model(spec, model_kwargs)
    ckpt, notes = read_checkpoint(path)
    model_keys = set(model.state_dict().keys())
    keys = list(ckpt.tensors)
    prefix = match_prefix(path, spec, keys, model_keys, key_prefix)
    mapped = []
    if ckpt.state_dict_key is not None:
        mapped.append(f"read the state_dict from its {ckpt.state_dict_key!r} entry")
    if prefix and key_prefix is None:
        mapped.append(f"removed the prefix {prefix!r} from its {len(keys)} keys")
    if mapped:
        notes.append(f"note: {path}: {' and '.join(mapped)} to fit the model; outputs keep the same layout")
    tensors = {(k[len(prefix):] if k.startswith(prefix) else k): torch.from_numpy(v.copy())
               for k, v in ckpt.tensors.items()}
    prune_keys = set()
    for key in sorted(k for k in tensors if k.endswith("_mask")):
        base = key[: -len("_mask")]
        if base + "_orig" not in tensors:
            continue
        qual, _, pname = base.rpartition(".")
        try:
            mod = model.get_submodule(qual)
        except AttributeError:
            raise BadCheckpoint(f"{path}: mask {prefix + key!r} names module {qual!r}, which the model from {spec} "
                                "lacks") from None
        if not isinstance(getattr(mod, pname, None), torch.Tensor):
            raise BadCheckpoint(f"{path}: mask {prefix + key!r} names parameter {pname!r}, which module {qual!r} lacks")
        if tuple(getattr(mod, pname).shape) != tuple(tensors[key].shape):
            raise BadCheckpoint(f"{path}: mask {prefix + key!r} has shape {tuple(tensors[key].shape)} but the "
                                f"model's {base!r} has {tuple(getattr(mod, pname).shape)}")
        prune.custom_from_mask(mod, pname, tensors[key] != 0)
        prune_keys.add(base)
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise BadCheckpoint(f"{path}: does not fit the model from {spec}: "
                            f"{(lines[0] if lines else _first_line(exc))[:300]}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.unexpected_keys:
            parts.append(f"unexpected {short_list(result.unexpected_keys)}")
        if result.missing_keys:
            parts.append(f"missing {short_list(result.missing_keys)}")
        raise BadCheckpoint(f"{path}: does not fit the model from {spec}: {'; '.join(parts)}")
    with torch.no_grad():  # recompute prune's weight attributes from the loaded tensors
        for mod in model.modules():
            for hook in list(mod._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    hook(mod, None)
    return UserModel(model.eval(), ckpt, spec, prefix, frozenset(prune_keys), notes)


def default_input_shape(model) -> tuple[int, ...]:
    """``(1, in_features)`` for a model whose first layer is a Linear; else an error."""
    import torch.nn as nn

    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))), None)
    if isinstance(first, nn.Linear):
        return (1, first.in_features)
    raise NetgraphError("--input-shape is needed for this model (e.g. --input-shape 1,3,224,224); "
                        "only models that start with a Linear layer have an obvious one")


def prepare_model(args, path: str) -> UserModel:
    """Build, load and trace for a command with the model options (:func:`add_model_options`).

    Notes (keys mapped, wrapper read) go to stderr, one line each.
    """
    from ..torch._trace import trace_model

    shape = parse_input_shape(getattr(args, "input_shape", None))
    user = load_model(args.model, path, model_kwargs=getattr(args, "model_kwargs", None),
                      key_prefix=getattr(args, "key_prefix", None))
    for note in user.notes:
        print(f"netgraph: {note}", file=sys.stderr)
    user.notes = []
    user.shape = shape or default_input_shape(user.model)
    user.traced = trace_model(user.model, user.shape)
    return user


def audit_with_model(args) -> int:
    """``netgraph audit CKPT --model M``: trace the model, print the audit; 1 if dead and asked."""
    from .audit import finish

    user = prepare_model(args, args.path)
    report = user.traced.audit(source=args.path)
    return finish(args, report)


# -- repair / compact ------------------------------------------------------------------------

def _scores(user: UserModel, path: str | None) -> tuple[dict | None, dict | None]:
    """Score tensors by the model's weight names (the file may use the checkpoint's prefix):
    ``(ranking, raw)``; the ranking is ``|score|``, as the checkpoint-only path ranks (the
    largest ``|score|`` wins); ``raw`` are the values ``--new-values scores`` gives."""
    if path is None:
        return None, None
    import torch

    from ..io import load_checkpoint

    import numpy as np

    raw = {}
    for k, v in load_checkpoint(path).tensors.items():
        if np.ndim(v) >= 1:  # score tensors; a step counter beside them is no score
            raw[k[len(user.prefix):] if user.prefix and k.startswith(user.prefix) else k] = np.asarray(v)
    return {k: torch.from_numpy(np.abs(v)) for k, v in raw.items()}, raw


def _prune_layout(state: Mapping[str, Any], prune_keys) -> dict:
    """A compacted (plain) state_dict in torch's prune format for the keys that came in it:
    ``X_orig`` = the compacted weights, ``X_mask`` = where they are non-zero."""
    out = {}
    for k, v in state.items():
        if k in prune_keys:
            out[k + "_orig"] = v
            out[k + "_mask"] = (v != 0).to(v.dtype)
        else:
            out[k] = v
    return out


def _spec_with_prefix(traced, state_keys, prefix: str) -> dict:
    from .._spec import graph_to_spec

    bias_keys = {}
    for name, (module, _) in traced.params.items():
        key = f"{module}.bias" if module else "bias"
        if key in state_keys or key + "_orig" in state_keys:
            bias_keys[name] = key
    spec = graph_to_spec(traced.graph, bias_keys)
    if prefix:
        for blk in spec["blocks"]:
            if blk["kind"] == "weighted":
                blk["name"] = prefix + blk["name"]
                if blk.get("bias"):
                    blk["bias"] = prefix + blk["bias"]
    return spec


def _drop_created_biases(original, repaired) -> list[str]:
    """Reconnect folds constant weights into a bias and creates one where the layer had
    none; the output must not have a parameter the model lacks, so such a bias is removed
    again (the constant weights are removed, as reconnect does where it cannot fold)."""
    dropped = []
    for name, mod in repaired.named_modules():
        orig = original.get_submodule(name)
        if getattr(mod, "bias", None) is not None and getattr(orig, "bias", None) is None \
                and "bias" in mod._parameters:
            mod.bias = None
            dropped.append(name or "<root>")
    return dropped


def repair_with_model(args):
    """``netgraph repair|compact CKPT --model M -o OUT``: prune, reconnect or compact.

    Returns
    -------
    CheckpointRepair
        The file written and the audits; ``extra`` holds the compaction's figures and
        ``max_relative_difference`` when ``--verify`` ran.

    Raises
    ------
    VerificationFailed
        ``--verify`` found an output changed by more than 1e-9 (relative, float64);
        nothing is written then.
    """
    import torch

    from ..io import output_path
    from ..io._repair import CheckpointRepair, new_values_for, write_like
    from ..torch._repair import compact_model, prune_model, reconnect_model, verify
    from ..torch._trace import trace_model

    mode = args.mode
    new_values = getattr(args, "new_values", None)
    extra_inputs = [p for p in (getattr(args, "scores", None), new_values) if p and p not in ("orig", "scores")]
    output = output_path(args.output, force=args.force, inputs=[args.path, *extra_inputs])
    user = prepare_model(args, args.path)
    model, shape, traced = user.model, user.shape, user.traced
    before = traced.audit(source=args.path)
    extra: dict[str, Any] = {}
    notes: list[str] = []
    if mode == "prune":
        repaired = prune_model(model, traced)
        state = repaired.state_dict()
    elif mode == "reconnect":
        scores, raw_scores = _scores(user, getattr(args, "scores", None))
        values = None
        if new_values not in (None, "orig", "scores"):
            from ..io import load_checkpoint

            values = {(k[len(user.prefix):] if user.prefix and k.startswith(user.prefix) else k): v
                      for k, v in load_checkpoint(new_values).tensors.items()}
        chosen = {}
        for name, (qual, param) in traced.params.items():
            w = getattr(model.get_submodule(qual), param)
            if raw_scores is not None and name not in raw_scores and name not in user.prune_keys:
                raise NetgraphError(f"--scores {args.scores}: no tensor for weight {user.prefix + name!r} "
                                    f"(its keys: {short_list(sorted(raw_scores))}); give one score tensor per weight")
            if name not in user.prune_keys and (raw_scores is None or name not in raw_scores):
                raise NetgraphError(
                    f"{args.path}: weight {user.prefix + name!r} stores zeros where it was pruned, so nothing ranks "
                    "the connections to re-add; give --scores FILE (a state_dict of tensors by weight name, the "
                    "largest |score| wins) or a checkpoint in torch's prune format (weight_orig + weight_mask)")
            chosen[name] = new_values_for(name, prune_format=name in user.prune_keys, new_values=new_values,
                                          scores=raw_scores,
                                          values=values, shape=tuple(w.shape), where=args.path)
        repaired = reconnect_model(model, traced, scores=scores)
        dropped = _drop_created_biases(model, repaired)
        if dropped:
            notes.append(f"constant weights of {short_list(dropped)} were removed without folding them into a bias: "
                         "the layers have none and the output gets no parameter the model lacks")
        _set_new_values(model, repaired, traced, chosen)
        state = repaired.state_dict()
    else:
        result = compact_model(model, traced)
        repaired = result.model
        state = _prune_layout(result.state_dict, user.prune_keys)
        extra = {"compact": result.to_dict()}
    if getattr(args, "verify", False):
        if mode == "reconnect":
            notes.append("--verify skipped: reconnect changes the function by design")
        else:
            diff = verify(model, repaired, shape)
            if not diff <= TOLERANCE:
                raise VerificationFailed(
                    f"{mode} changed the outputs: largest relative difference {diff:.3g} > {TOLERANCE:g}; "
                    f"nothing was written to {output}")
            extra["max_relative_difference"] = diff
    tensors = {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    in_keys = {k[len(user.prefix):] if k.startswith(user.prefix) else k for k in user.ckpt.tensors}
    if set(tensors) != in_keys:
        new, gone = sorted(set(tensors) - in_keys), sorted(in_keys - set(tensors))
        raise NetgraphError(f"{output}: the {mode}ed state_dict would not load into the input's model "
                            f"(new keys {short_list(new)}; missing {short_list(gone)}); nothing was written")
    after_traced = trace_model(repaired, shape)
    after = after_traced.audit(source=output)
    # a stored topology has no spatial sizes: the file audits at channel level, so that is
    # what the written file is compared with (``after``, tap level, is what is reported)
    stored = after_traced.audit(source=output, resolution="channel")
    meta = {"topology": _spec_with_prefix(after_traced, set(tensors), user.prefix), "audit": after.to_dict(),
            "repair": mode, "input": os.path.abspath(args.path), "model": args.model, **extra}
    notes += write_like(user.ckpt, tensors, meta, output, key_prefix=user.prefix,
                        check=lambda written: _same_audit(written, stored, output, user.prefix))
    b, a = before.summary, after.summary
    removed, added = _changes(model, repaired, traced) if mode != "compact" else (b.kept - a.kept, 0)
    if mode == "reconnect" and a.kept < b.kept:
        notes.append(f"warning: only {added:,} unkept weights join an accessible unit to a coaccessible one; "
                     f"{b.kept - a.kept:,} of the budget could not be re-spent")
    if mode == "reconnect" and added:
        from ..io._repair import _describe_values

        notes.append(f"the {added:,} added weights take their values from "
                     f"{_describe_values(new_values, bool(user.prune_keys))}")
    return CheckpointRepair(output, mode, before, after, removed, added, tuple(notes), extra)


def _mask_of(mod, param: str):
    """Which entries of ``mod.<param>`` are kept: its prune mask, else its non-zeros."""
    import torch

    mask = getattr(mod, f"{param}_mask", None)
    t = mask if isinstance(mask, torch.Tensor) else getattr(mod, param)
    return (t.detach() != 0).cpu().numpy()


def _changes(model, repaired, traced) -> tuple[int, int]:
    """(weights removed, weights added) between two models of the same shapes."""
    removed = added = 0
    for qual, param in traced.params.values():
        old = _mask_of(model.get_submodule(qual), param).astype(bool)
        new = _mask_of(repaired.get_submodule(qual), param).astype(bool)
        removed += int((old & ~new).sum())
        added += int((new & ~old).sum())
    return removed, added


COMPARED = ("name", "shape", "weights", "kept", "effective", "dead", "constant")


def _same_audit(written, after, output: str, prefix: str = "") -> None:
    """The written file, audited from its stored topology, must count what the traced
    repaired model counts at channel level (per layer: kept, effective, dead, constant)."""
    from ..io import graph_from_checkpoint
    from .._audit import audit

    check = audit(graph_from_checkpoint(written), source=output)
    got = [{k: layer.get(k) for k in COMPARED} for layer in check.to_dict()["layers"]]
    for layer in got:  # the file's names carry the prefix the model's keys were matched without
        if prefix and layer["name"].startswith(prefix):
            layer["name"] = layer["name"][len(prefix):]
    want = [{k: layer.get(k) for k in COMPARED} for layer in after.to_dict()["layers"]]
    if got != want:
        bad = next((g["name"] for g, w in zip(got, want) if g != w), None)
        raise NetgraphError(f"{output}: the file as written audits differently from the repaired model "
                            f"(first at layer {bad!r}); nothing was written")


def _set_new_values(model, repaired, traced, chosen) -> None:
    """Give the weights reconnect added the values the user chose (``X_orig`` where the
    choice is the prune format's own values: nothing to do then)."""
    import numpy as np
    import torch

    for name, values in chosen.items():
        if values is None:
            continue
        qual, param = traced.params[name]
        old, new = model.get_submodule(qual), repaired.get_submodule(qual)
        added = torch.from_numpy(np.ascontiguousarray(_mask_of(new, param).astype(bool) & ~_mask_of(old, param).astype(bool)))
        if not added.any():
            continue
        target = getattr(new, f"{param}_orig", None)
        if not isinstance(target, torch.Tensor):
            target = getattr(new, param)
        with torch.no_grad():
            v = torch.from_numpy(np.ascontiguousarray(values)).to(target.dtype)
            target[added] = v[added]
            mask = getattr(new, f"{param}_mask", None)
            if isinstance(mask, torch.Tensor):
                setattr(new, param, target * mask)
