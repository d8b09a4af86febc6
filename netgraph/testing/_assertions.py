"""Assertions about connectivity, in the style of ``numpy.testing``.

Contract
--------
* :func:`assert_reachability_equal` and :func:`assert_effective_equal` compare values you
  computed with netgraph's exact :func:`~netgraph.reachability` of a graph; on a mismatch
  they raise ``AssertionError`` whose message draws the graph and the difference.
* :func:`assert_phi_exact` and :func:`assert_factors_exact` run a Hypothesis search over
  masked networks (:func:`~netgraph.testing.layered_nets` by default, the graph corner
  cases first) for a network where *your* differentiable φ disagrees with exact
  reachability, and fail with the **shrunk** counterexample drawn as text and printed as
  Python source ready for ``@example(...)``.  φ may use any framework: it receives numpy
  masks and returns array-likes (numpy, torch, JAX, … anything ``np.asarray`` reads, or a
  tensor with ``.detach()``).
* :func:`assert_model_factors_exact` does the same for a torch model whose topology a graph
  cannot state (products / gates, zero padding): the truth is the tap-level probe
  :func:`~netgraph.testing.tap_probe` (or the ``oracle`` you pass).
* :func:`assert_function_preserved`: zeroing the weights called dead leaves the outputs of a
  torch model unchanged, in float64.

A unit or weight is "reported" by φ when its value is positive (φ_r, φ_l) or non-zero (Φ).
Do not call the Hypothesis-driven helpers from inside a ``@given`` test.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np

from .._graph import LayeredGraph, pair_selector
from .._reach import reachability
from ._net import GRAPH_CORNER_CASES, Net
from ._picture import draw_graph, draw_units, draw_weights

__all__ = ["assert_reachability_equal", "assert_effective_equal", "assert_phi_exact",
           "assert_factors_exact", "assert_model_factors_exact", "assert_function_preserved",
           "prunable_weights"]


def _fail(message: str):
    # One raise site for every failure: Hypothesis then shrinks all of them as one bug.
    raise AssertionError(message)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        x = x.detach()
    if hasattr(x, "cpu"):
        x = x.cpu()
    return np.asarray(x)


def _vectors(got, graph: LayeredGraph, what: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """``got`` (group → array-like) as bool vectors; the problems found on the way."""
    problems, out = [], {}
    if not isinstance(got, Mapping):
        return {}, [f"{what} is a {type(got).__name__}; expected a mapping group name -> array (width,)"]
    for g in graph.order:
        if g not in got:
            problems.append(f"{what} has no entry for group {g!r}")
            continue
        v = _as_numpy(got[g]).astype(np.float64, copy=False).reshape(-1)
        w = graph.groups[g].width
        if v.size != w:
            problems.append(f"{what}[{g!r}] has {v.size} values but group {g!r} has {w} units")
            continue
        if not np.isfinite(v).all():
            problems.append(f"{what}[{g!r}] is not finite: {v.tolist()}")
        out[g] = v > 0
    return out, problems


def assert_reachability_equal(got_accessible, got_coaccessible, graph: LayeredGraph, *, err_msg: str = "",
                              names: tuple[str, str] = ("accessible", "coaccessible")) -> None:
    """Assert that per-unit values are positive exactly on the accessible / coaccessible units.

    Parameters
    ----------
    got_accessible, got_coaccessible : mapping group name -> array-like, shape (width,)
        Your values (φ_r, φ_l); a unit counts as accessible (coaccessible) when its value is
        positive.  Every group of ``graph`` must have an entry.
    graph : LayeredGraph
    err_msg : str
        Prepended to the failure message.
    names : (str, str)
        How the two inputs are called in the message.

    Raises
    ------
    AssertionError
        With the graph drawn and the groups where the values differ marked.

    Examples
    --------
    >>> from netgraph import chain
    >>> g = chain([np.array([[1, 0], [0, 0]])])
    >>> acc = {g.order[0]: [1, 1], g.order[1]: [1, 0]}
    >>> coacc = {g.order[0]: [1, 0], g.order[1]: [1, 1]}
    >>> assert_reachability_equal(acc, coacc, g)
    """
    r = reachability(graph)
    acc, p1 = _vectors(got_accessible, graph, names[0])
    coacc, p2 = _vectors(got_coaccessible, graph, names[1])
    wrong = [g for g in graph.order if g in acc and not np.array_equal(acc[g], r.accessible[g])]
    wrong += [g for g in graph.order if g in coacc and not np.array_equal(coacc[g], r.coaccessible[g])]
    if not (p1 or p2 or wrong):
        return
    table = draw_units(graph, [("accessible", r.accessible), ("coaccessible", r.coaccessible),
                               (names[0], acc), (names[1], coacc)], compare=[(0, 2), (1, 3)])
    head = f"{err_msg}\n" if err_msg else ""
    _fail(f"{head}{names[0]} / {names[1]} differ from exact reachability"
          + "".join(f"\n  {p}" for p in p1 + p2)
          + f"\n\nnetwork:\n{_indent(draw_graph(graph))}\n\nunits (1 = yes; exact, then yours):\n{_indent(table)}")


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _bcast(pairs: np.ndarray, shape) -> np.ndarray:
    """A per-pair ``(out, in/groups)`` array broadcast over the kernel taps of ``shape``."""
    return np.broadcast_to(pairs.reshape(pairs.shape + (1,) * (len(shape) - 2)), tuple(shape))


def _pair_counts(block, nonzero: np.ndarray) -> np.ndarray:
    """(out, in/groups) number of non-zero kernel taps of each weight pair."""
    return nonzero.reshape(nonzero.shape[0], nonzero.shape[1], -1).sum(axis=2)


def assert_effective_equal(weights_or_masks, graph: LayeredGraph, *, masks=None, err_msg: str = "") -> None:
    """Assert that arrays are non-zero exactly on the effective weights of ``graph``.

    Parameters
    ----------
    weights_or_masks : mapping weight name -> array-like of the weight's PyTorch shape
        E.g. effective weights ``ŵ ⊙ M ⊙ Φ`` (with ``ŵ`` non-zero) or masks ``M ⊙ Φ``.
        Every weighted block of ``graph`` must have an entry.
    graph : LayeredGraph
    masks : mapping weight name -> bool array, optional
        The kept weights.  Without it a conv's taps are compared per weight pair (the graph
        keeps the number of kept taps of a pair, not which ones): a pair must have exactly
        its kept number of non-zero taps when effective, none otherwise.

    Raises
    ------
    AssertionError
        With the graph drawn and, per weight, the entries that differ.

    Examples
    --------
    >>> from netgraph import chain
    >>> g = chain([np.array([[1, 1]]), np.array([[1], [0]])], names=["a", "b"])
    >>> assert_effective_equal({"a": [[2.0, -1.0]], "b": [[0.5], [0.0]]}, g)
    """
    problems, expected, got_b, kept_d, per_pair = [], {}, {}, {}, []
    if not isinstance(weights_or_masks, Mapping):
        _fail(f"weights_or_masks is a {type(weights_or_masks).__name__}; expected a mapping weight name -> array")
    r = reachability(graph)
    for b in graph.weighted_blocks:
        if b.name not in weights_or_masks:
            problems.append(f"no entry for weight {b.name!r}")
            continue
        a = _as_numpy(weights_or_masks[b.name])
        if tuple(a.shape) != tuple(b.weight_shape):
            problems.append(f"{b.name!r} has shape {tuple(a.shape)} but the weight is {tuple(b.weight_shape)}")
            continue
        if np.issubdtype(a.dtype, np.number) and not np.isfinite(a).all():
            problems.append(f"{b.name!r} is not finite")
        nz = a != 0
        sel = pair_selector(b, r.accessible[b.src], r.coaccessible[b.dst])
        if masks is not None and b.name in masks:
            kept = np.asarray(masks[b.name], bool)
            exp = kept & sel
        else:
            # Linear: the pair is the weight.  Conv: compare per pair, with the kept tap count.
            kept_pairs = np.zeros(b.weight_shape[:2], np.int64)
            per = b.weight_shape[0] // b.conv_groups
            o = b.cols
            c = b.rows - (o // per) * b.weight_shape[1]
            kept_pairs[o, c] = b.taps
            if len(b.weight_shape) == 2:
                kept = kept_pairs > 0
                exp = kept & sel
            else:  # compared per (out, in/groups) pair: does it have its kept number of taps?
                eff_pairs = sel[(...,) + (0,) * (len(b.weight_shape) - 2)] & (kept_pairs > 0)
                bad = _pair_counts(b, nz) != np.where(eff_pairs, kept_pairs, 0)
                kept, exp, nz = kept_pairs > 0, eff_pairs, eff_pairs ^ bad
                per_pair.append(b.name)
        expected[b.name], got_b[b.name], kept_d[b.name] = exp, nz, kept
    wrong = [n for n in expected if not np.array_equal(expected[n], got_b[n])]
    if not (problems or wrong):
        return
    head = f"{err_msg}\n" if err_msg else ""
    pic = draw_weights(expected, got_b, kept_d)
    if any(n in wrong for n in per_pair):
        problems.append(f"{[n for n in per_pair if n in wrong]}: kernel taps compared per (out, in) pair, "
                        "counted as the pairs whose number of non-zero taps is wrong (pass masks= for taps)")
    units = draw_units(graph, [("accessible", r.accessible), ("coaccessible", r.coaccessible)])
    _fail(f"{head}non-zero entries differ from the effective weights"
          + "".join(f"\n  {p}" for p in problems)
          + (f"\n\n{_indent(pic)}" if pic else "")
          + f"\n\nnetwork:\n{_indent(draw_graph(graph))}\n\nexact units (1 = yes):\n{_indent(units)}")


# --------------------------------------------------------------------------------------
# Hypothesis drivers
# --------------------------------------------------------------------------------------

def _search(check: Callable, strategy, examples: Iterable, settings, max_examples):
    """Run ``check`` on the examples, then on ``strategy``'s draws; re-raise the shrunk failure
    without Hypothesis' notes (our message already holds the counterexample)."""
    from hypothesis import HealthCheck, example, given
    from hypothesis import settings as Settings

    def test(case):
        check(case)

    test = given(strategy)(test)
    for ex in reversed(list(examples)):
        test = example(ex)(test)
    base = settings if settings is not None else Settings.default
    overrides = {"deadline": None,
                 "suppress_health_check": list(base.suppress_health_check) + [HealthCheck.too_slow,
                                                                              HealthCheck.data_too_large]}
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    test = Settings(base, **overrides)(test)
    try:
        test()
    except AssertionError as exc:
        raise AssertionError(str(exc)) from None


def _default_examples(nets, examples) -> list:
    if examples is not None:
        return list(examples)
    return list(GRAPH_CORNER_CASES.values()) if nets is None else []


def _float_masks(net: Net) -> dict[str, np.ndarray]:
    return {n: m.astype(np.float64) for n, m in net.masks.items()}


def _counterexample(net: Net) -> str:
    return "as an @example (netgraph.testing.Net):\n" + _indent(net.to_source())


def assert_phi_exact(phi: Callable, nets=None, *, examples=None, settings=None, max_examples: int | None = None,
                     binary: bool = False) -> None:
    """Search for a network where ``phi`` differs from exact reachability; fail with the shrunk one.

    Parameters
    ----------
    phi : callable ``phi(graph, masks) -> (phi_r, phi_l)``
        ``graph`` is the :class:`~netgraph.LayeredGraph` (its blocks give the structure:
        ``b.src``, ``b.dst``, ``b.kind``, ``b.weighted``, ``b.matrix``, ``b.weight_shape``,
        ``b.conv_groups``); ``masks`` maps each weight name to a float64 0/1 numpy array of
        the weight's PyTorch shape ``(out, in/groups, *kernel)``.  Returns two mappings
        group name -> array-like ``(width,)``; positive means accessible / coaccessible.
    nets : Hypothesis strategy of :class:`~netgraph.testing.Net`, optional
        Default :func:`~netgraph.testing.layered_nets`.
    examples : iterable of Net, optional
        Tried first.  Default: the graph corner cases (``GRAPH_CORNER_CASES``) when ``nets``
        is None, none otherwise.
    settings : hypothesis.settings, optional
        Default: the active profile (``ci``, ``dev``, ``thorough``, …), without deadline.
    max_examples : int, optional
        Overrides the profile's.
    binary : bool
        Also require every value to be exactly 0 or 1.

    Raises
    ------
    AssertionError
        The shrunk counterexample: the network drawn as text, exact and φ's units side by
        side, and the network as Python source.
    """
    from ._strategies import layered_nets

    def check(net: Net):
        graph = net.graph
        try:
            phi_r, phi_l = phi(graph, _float_masks(net))
        except Exception as exc:  # a crash is a counterexample too
            _fail(f"phi raised {type(exc).__name__}: {exc}\n\nnetwork:\n{_indent(draw_graph(graph))}\n\n"
                  + _counterexample(net))
        if binary:
            for what, vecs in (("phi_r", phi_r), ("phi_l", phi_l)):
                for g, v in dict(vecs).items():
                    v = _as_numpy(v)
                    if not np.isin(v, (0, 1)).all():
                        _fail(f"{what}[{g!r}] is not 0/1: {v.tolist()}\n\nnetwork:\n{_indent(draw_graph(graph))}"
                              f"\n\n{_counterexample(net)}")
        try:
            assert_reachability_equal(phi_r, phi_l, graph, names=("phi_r", "phi_l"))
        except AssertionError as exc:
            _fail(f"{exc}\n\n{_counterexample(net)}")

    _search(check, nets if nets is not None else layered_nets(), _default_examples(nets, examples), settings,
            max_examples)


def assert_factors_exact(factors: Callable, nets=None, *, examples=None, settings=None,
                         max_examples: int | None = None) -> None:
    """Search for a network where the weight factors Φ of ``factors`` miss or add effective weights.

    ``factors(graph, masks) -> {weight name: Φ}``, ``Φ`` of the weight's shape; the check is
    that ``masks ⊙ Φ`` is non-zero exactly on the effective weights
    (:func:`assert_effective_equal`).  Other parameters as :func:`assert_phi_exact`.
    """
    from ._strategies import layered_nets

    def check(net: Net):
        graph = net.graph
        masks = _float_masks(net)
        try:
            got = factors(graph, masks)
            product = {n: masks[n] * _as_numpy(got[n]).astype(np.float64) for n in masks}
        except Exception as exc:
            _fail(f"factors raised {type(exc).__name__}: {exc}\n\nnetwork:\n{_indent(draw_graph(graph))}\n\n"
                  + _counterexample(net))
        try:
            assert_effective_equal(product, graph, masks=net.masks, err_msg="masks * factors:")
        except AssertionError as exc:
            _fail(f"{exc}\n\n{_counterexample(net)}")

    _search(check, nets if nets is not None else layered_nets(), _default_examples(nets, examples), settings,
            max_examples)


# --------------------------------------------------------------------------------------
# Torch models
# --------------------------------------------------------------------------------------

def prunable_weights(model) -> dict:
    """Parameter path → the ``(out, in/groups, *kernel)`` shape of every Linear / ConvNd weight."""
    import torch.nn as nn

    return {(f"{n}.weight" if n else "weight"): tuple(m.weight.shape) for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))}


def _own_masks(model) -> dict[str, np.ndarray]:
    import torch.nn as nn

    out = {}
    for n, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            mask = getattr(m, "weight_mask", None)
            mask = (mask != 0) if mask is not None else (m.weight.detach() != 0)
            out[f"{n}.weight" if n else "weight"] = mask.cpu().numpy()
    return out


def assert_model_factors_exact(factors: Callable, model, input_shape, *, sparsity=(0.0, 1.0), examples=None,
                               oracle: Callable | None = None, settings=None, max_examples: int | None = None) -> None:
    """Search for masks of a torch model where ``factors`` miss or add effective weights.

    For what a :class:`~netgraph.LayeredGraph` cannot state (a product ``x · σ(g)``, taps that
    read only zero padding), the truth is measured on the model itself.

    Parameters
    ----------
    factors : callable ``factors(masks) -> {weight name: Φ}``
        ``masks``: parameter path (``"gate.weight"``) → float64 0/1 numpy array.  The check is
        that ``masks ⊙ Φ`` is non-zero exactly on the weights ``oracle`` reports.
    model : torch.nn.Module
    input_shape : tuple of int
    sparsity : (lo, hi)
        Fraction of pruned entries of each drawn mask.
    examples : iterable of mask dicts, optional
        Tried first; default: the model's own masks (``weight_mask``, else ``weight != 0``).
    oracle : callable ``oracle(model, input_shape, masks) -> {name: bool array}``, optional
        The effective weights of ``model`` pruned with ``masks``.  Default: the tap-level
        probe, :func:`~netgraph.testing.tap_probe` on :func:`~netgraph.testing.masked_copy`
        (products, gates, zero padding, biases apart); :func:`~netgraph.testing.influence_probe`
        is an independent alternative for smooth models without biases.
    """
    from hypothesis import strategies as st

    from ._oracles import masked_copy
    from ._probe import tap_probe
    from ._strategies import _check_sparsity, _mask_at

    shapes = prunable_weights(model)
    sparsity = _check_sparsity(sparsity)
    oracle = oracle or (lambda m, s, masks: tap_probe(masked_copy(m, masks), s))

    @st.composite
    def mask_sets(draw):
        return {n: _mask_at(draw, shape, sparsity) for n, shape in shapes.items()}

    def check(masks):
        masks = {n: np.asarray(m, bool) for n, m in masks.items()}
        truth = oracle(model, input_shape, masks)
        try:
            got_f = factors({n: m.astype(np.float64) for n, m in masks.items()})
            got = {n: masks[n] & (_as_numpy(got_f[n]) != 0) for n in shapes}
        except Exception as exc:
            _fail(f"factors raised {type(exc).__name__}: {exc}\n\n" + _draw_masks(masks))
        expected = {n: np.asarray(truth[n], bool) for n in shapes}
        if all(np.array_equal(expected[n], got[n]) for n in shapes):
            return
        _fail(f"masks * factors differ from the weights that change {type(model).__name__}'s output\n\n"
              + _indent(draw_weights(expected, got, masks)) + "\n\nmasks (rows = outputs):\n"
              + _indent(_draw_masks(masks)))

    examples = [_own_masks(model)] if examples is None else list(examples)
    _search(check, mask_sets(), examples, settings, max_examples)


def _draw_masks(masks: Mapping[str, np.ndarray]) -> str:
    lines = []
    for n, m in masks.items():
        m = np.asarray(m, bool)
        grid = m.reshape(m.shape[0], m.shape[1], -1).sum(axis=2)
        lines.append(f"{n} {tuple(m.shape)}")
        single = m.ndim == 2
        for row in grid:
            lines.append("  " + "".join("." if c == 0 else "#" if single else str(min(int(c), 9)) for c in row))
    return "\n".join(lines)


def assert_function_preserved(model, masks, dead, *, input_shape=None, inputs=None, trials: int = 3, seed: int = 0,
                              rtol: float = 1e-9) -> None:
    """Assert that zeroing the weights called dead leaves the outputs unchanged (float64).

    Parameters
    ----------
    model : torch.nn.Module
        Any format: plain weights or torch's prune format.  Not modified.
    masks : mapping parameter path -> bool array, or None
        The kept weights (``"layer1.0.conv1.weight"``); None: the model's own
        (``weight_mask``, else ``weight != 0``).  Weights not listed keep their values.
    dead : mapping parameter path -> bool array
        The weights you call dead *and removable*.  Dead weights fed only by a bias or a
        BatchNorm shift (*constant*) change the output by a constant: leave them out.
    input_shape : tuple of int, optional
        For seeded random normal inputs; default ``model.input_shape()`` when the model has it.
    inputs : tensor or sequence of tensors, optional
        Use these instead of random inputs.
    rtol : float
        Largest allowed ``max|y' - y| / max|y|`` per output tensor.

    Raises
    ------
    AssertionError
        Naming the weights called dead, the output and the relative difference.
    """
    import torch

    from ._oracles import _float64_copy

    if inputs is None:
        if input_shape is None:
            if not hasattr(model, "input_shape"):
                raise TypeError("assert_function_preserved needs input_shape= (or inputs=) for this model")
            input_shape = model.input_shape()
        gen = torch.Generator().manual_seed(seed)
        inputs = [torch.randn(tuple(int(s) for s in input_shape), generator=gen, dtype=torch.float64)
                  for _ in range(trials)]
    elif isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    kept = _own_masks(model) if masks is None else {n: np.asarray(m, bool) for n, m in masks.items()}
    unknown = [n for n in list(kept) + list(dead) if n not in prunable_weights(model)]
    if unknown:
        raise KeyError(f"{unknown[:3]} are not Linear / Conv weights of the model; expected names like "
                       f"{list(prunable_weights(model))[:3]}")
    for n, d in dead.items():
        if n in kept and np.asarray(d, bool).shape != kept[n].shape:
            raise ValueError(f"dead[{n!r}] has shape {np.asarray(d).shape} but the weight is {kept[n].shape}")
    after_masks = dict(kept)
    for n, d in dead.items():
        d = np.asarray(d, bool)
        after_masks[n] = after_masks.get(n, np.ones(d.shape, bool)) & ~d
    before, after = _float64_copy(model, kept), _float64_copy(model, after_masks)
    with torch.no_grad():
        for k, x in enumerate(inputs):
            x = x.to(torch.float64)
            ya, yb = before(x), after(x)
            ya = ya if isinstance(ya, (tuple, list)) else [ya]
            yb = yb if isinstance(yb, (tuple, list)) else [yb]
            for i, (u, v) in enumerate(zip(ya, yb)):
                scale = float(u.abs().max()) if u.numel() else 0.0
                diff = float((u - v).abs().max()) if u.numel() else 0.0
                if diff > rtol * scale or not np.isfinite(diff):
                    n_dead = {n: int(np.asarray(d, bool).sum()) for n, d in dead.items() if np.asarray(d).any()}
                    _fail(f"zeroing the weights called dead changes output {i} of {type(model).__name__} "
                          f"on input {k}: max |difference| {diff:.3g} vs max |output| {scale:.3g} "
                          f"(rtol {rtol:g}); weights zeroed: {n_dead}")

