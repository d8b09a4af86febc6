"""Models that declare their own topology: the papers' skeleton GCN and an MLP.

Contract
--------
Each model stores every prunable weight as a *latent* parameter ``ŵ`` in standardized
units (initialised N(0, 1) from an explicit ``torch.Generator``); its forward pass uses
``scale · ŵ ⊙ mask`` where ``scale = gain/√fan_in`` is fixed per layer and ``mask`` is
whatever the training method supplies (ψ, ψ ⊙ Φ, a crisp mask, or nothing).  The
parameter's state_dict key (``"fc.weight"``) is the name of its weighted block in
:meth:`graph`, the only description of the model's topology: the TC loss walks it, the
audit reads it, the checkpoint stores it.

GCN (tc-pruning §2, §5; coarse-to-fine §3, §5), input ``x`` of shape ``(B, n, s)``::

    h1 = relu(Σ_k softmax(A_k) · x · W_kᵀ + b1)          # K heads, (B, n, C1)
    h2 = relu(Â · h1 · W_convᵀ + b2)                       # fixed normalized skeleton adjacency, (B, n, C2)
    h3 = relu(flatten(h2) · W_fcᵀ + b3)                    # node-major flatten: (B, n·C2) -> (B, H)
    logits = h3 · W_outᵀ + b4                              # softmax in the loss

Channel-level topology (attention and Â mix nodes but keep channels; softmax attention
is strictly positive and Â has self-loops, so every node reaches every node through
attention and itself through Â)::

    input(s) ==heads.k.weight (k=0..K-1)==> attention(C1) --conv.weight--> conv(C2)
        --expand ×n (channels last)--> flatten(n·C2) --fc.weight--> fc(H) --out.weight--> out(classes)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from netgraph import GraphBuilder, LayeredGraph
from netgraph.errors import NetgraphError

from ._masks import BlockLayout

__all__ = ["GCNConfig", "GCN", "MLP", "GCN_PRESETS", "gcn_preset", "FPHA_EDGES", "SBU_EDGES", "build_model"]

# FPHA hand joints: wrist, 5 MCPs (T, I, M, R, P), then PIP, DIP, TIP of each finger.
FPHA_EDGES = tuple([(0, k) for k in range(1, 6)]
                   + [e for f in range(5) for e in ((1 + f, 6 + 3 * f), (6 + 3 * f, 7 + 3 * f), (7 + 3 * f, 8 + 3 * f))])
# SBU Kinect: head, neck, torso, l-shoulder, l-elbow, l-hand, r-shoulder, r-elbow, r-hand,
# l-hip, l-knee, l-foot, r-hip, r-knee, r-foot; two persons (nodes 15..29 are the second).
_SBU_ONE = ((0, 1), (1, 2), (1, 3), (3, 4), (4, 5), (1, 6), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
            (2, 12), (12, 13), (13, 14))
SBU_EDGES = _SBU_ONE + tuple((a + 15, b + 15) for a, b in _SBU_ONE)


@dataclass(frozen=True)
class GCNConfig:
    """Widths of the skeleton GCN; ``edges`` are the skeleton's (undirected) bones."""

    n_nodes: int
    in_features: int
    heads: int
    head_channels: int
    filters: int
    hidden: int
    classes: int
    edges: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["edges"] = [list(e) for e in self.edges]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "GCNConfig":
        d = dict(d)
        d["edges"] = tuple(tuple(int(v) for v in e) for e in d["edges"])
        return cls(**d)


# The papers' settings: FPHA 16 heads, nodes encoded with 32 channels, 128 filters, a dense
# layer and a softmax layer (about 2 M parameters, 1,967,616 in tc-pruning Table 2);
# SBU 1 head, 8 filters.  hidden=700 brings the FPHA preset to the paper's size.
GCN_PRESETS = {
    "fpha": dict(heads=16, head_channels=32, filters=128, hidden=700),
    "sbu": dict(heads=1, head_channels=32, filters=8, hidden=64),
}


def gcn_preset(name: str, *, n_nodes: int, in_features: int, classes: int,
               edges: Sequence[tuple[int, int]]) -> GCNConfig:
    """A :class:`GCNConfig` from a preset name and the dataset's shapes."""
    if name not in GCN_PRESETS:
        raise NetgraphError(f"unknown GCN preset {name!r}; choose one of {sorted(GCN_PRESETS)}")
    return GCNConfig(n_nodes=n_nodes, in_features=in_features, classes=classes,
                     edges=tuple((int(a), int(b)) for a, b in edges), **GCN_PRESETS[name])


def _latent(shape, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape, generator=generator))


class _Weight(nn.Module):
    def __init__(self, shape, generator):
        super().__init__()
        self.weight = _latent(shape, generator)


class _Linear(nn.Module):
    """A linear layer with a latent weight ``(out, in)`` and a bias."""

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator):
        super().__init__()
        self.weight = _latent((n_out, n_in), generator)
        self.bias = nn.Parameter(torch.zeros(n_out))


class _Pruned(nn.Module):
    """Shared machinery: latent scales, masked weights, export in torch's prune format."""

    scales: dict[str, float]

    def _slot(self, name: str) -> tuple[nn.Module, str]:
        mod, _, attr = name.rpartition(".")
        return (self.get_submodule(mod) if mod else self), attr

    def prunable(self) -> dict[str, nn.Parameter]:
        """Prunable latent weights by weight name, in forward order (the latent Parameters
        themselves, also while a :class:`trainer.Pruner` masks them)."""
        out = {}
        for n in self.scales:
            mod, attr = self._slot(n)
            out[n] = mod.parametrizations[attr].original if parametrize.is_parametrized(mod, attr) else getattr(mod, attr)
        return out

    def weight(self, name: str, masks: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        """``scale·ŵ`` (⊙ the pruner's mask while one is attached) ⊙ ``masks[name]`` when given."""
        mod, attr = self._slot(name)
        w = getattr(mod, attr) * self.scales[name]
        if masks is not None and name in masks:
            w = w * masks[name]
        return w

    def block_layouts(self) -> dict[str, BlockLayout]:
        return {n: BlockLayout() for n in self.scales}

    def bias_keys(self) -> dict[str, str]:
        raise NotImplementedError

    def numpy_biases(self) -> dict[str, np.ndarray]:
        sd = self.state_dict()
        return {k: sd[k].detach().cpu().numpy() for k in set(self.bias_keys().values())}

    def export_state_dict(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torch.nn.utils.prune format: ``<name>_orig`` (= scale·ŵ) and ``<name>_mask`` for
        prunable weights; every other tensor as is.  Plain CPU tensors."""
        out = {}
        prunable = self.prunable()
        for k, v in self.state_dict().items():
            if k in prunable:
                out[k + "_orig"] = (v.detach() * self.scales[k]).cpu().clone()
                out[k + "_mask"] = masks[k].detach().to(v.dtype).cpu().clone()
            else:
                out[k] = v.detach().cpu().clone()
        return out

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def n_prunable(self) -> int:
        return sum(p.numel() for p in self.prunable().values())


def _normalized_adjacency(n: int, edges) -> torch.Tensor:
    a = torch.eye(n, dtype=torch.float64)
    for i, j in edges:
        a[i, j] = a[j, i] = 1.0
    d = a.sum(1).rsqrt()
    return (d[:, None] * a * d[None, :]).float()


class GCN(_Pruned):
    """The papers' skeleton GCN (module docstring); ``config`` from :func:`gcn_preset`.

    >>> cfg = gcn_preset("sbu", n_nodes=30, in_features=96, classes=8, edges=SBU_EDGES)
    >>> m = GCN(cfg, generator=torch.Generator().manual_seed(0))
    >>> m(torch.zeros(2, 30, 96)).shape
    torch.Size([2, 8])
    """

    def __init__(self, config: GCNConfig, *, generator: torch.Generator):
        super().__init__()
        c = config
        self.config = c
        for i, j in c.edges:
            if not (0 <= i < c.n_nodes and 0 <= j < c.n_nodes):
                raise NetgraphError(f"skeleton edge ({i}, {j}) names a node outside 0..{c.n_nodes - 1}")
        adj = torch.zeros(c.n_nodes, c.n_nodes)
        for i, j in c.edges:
            adj[i, j] = adj[j, i] = 1.0
        init = 2.0 * (torch.eye(c.n_nodes) + adj)
        self.attention = nn.Module()
        self.attention.logits = nn.Parameter(init.expand(c.heads, -1, -1)
                                             + 0.1 * torch.randn((c.heads, c.n_nodes, c.n_nodes), generator=generator))
        self.attention.bias = nn.Parameter(torch.zeros(c.head_channels))
        self.heads = nn.ModuleList(_Weight((c.head_channels, c.in_features), generator) for _ in range(c.heads))
        self.conv = _Linear(c.head_channels, c.filters, generator)
        self.fc = _Linear(c.n_nodes * c.filters, c.hidden, generator)
        self.out = _Linear(c.hidden, c.classes, generator)
        self.register_buffer("adjacency", _normalized_adjacency(c.n_nodes, c.edges), persistent=False)
        relu = math.sqrt(2.0)
        self.scales = {f"heads.{k}.weight": relu / math.sqrt(c.in_features * c.heads) for k in range(c.heads)}
        self.scales.update({"conv.weight": relu / math.sqrt(c.head_channels),
                            "fc.weight": relu / math.sqrt(c.n_nodes * c.filters),
                            "out.weight": 1.0 / math.sqrt(c.hidden)})

    def forward(self, x: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        c = self.config
        w = torch.stack([self.weight(f"heads.{k}.weight", masks) for k in range(c.heads)])  # (K, C1, s)
        xw = torch.einsum("bns,kcs->bknc", x, w)  # (B, K, n, C1)
        att = torch.softmax(self.attention.logits, dim=-1)  # (K, n, n), rows sum to 1
        h = torch.relu(torch.einsum("kvu,bkuc->bvc", att, xw) + self.attention.bias)  # (B, n, C1)
        h = self.adjacency @ (h @ self.weight("conv.weight", masks).t()) + self.conv.bias  # (B, n, C2)
        h = torch.relu(h).reshape(x.shape[0], c.n_nodes * c.filters)  # node-major flatten
        h = torch.relu(h @ self.weight("fc.weight", masks).t() + self.fc.bias)  # (B, H)
        return h @ self.weight("out.weight", masks).t() + self.out.bias  # (B, classes)

    def graph(self, masks: Mapping[str, np.ndarray] | None = None) -> LayeredGraph:
        """The channel-level layered DAG for ``masks`` (PyTorch layout; all ones when None)."""
        c = self.config
        masks = _numpy_masks(self, masks)
        biases = self.numpy_biases()
        b = GraphBuilder()
        b.input("input", c.in_features)
        for k in range(c.heads):
            b.weight(f"heads.{k}.weight", "input", "attention", masks[f"heads.{k}.weight"])
        b.constant("attention", biases["attention.bias"] != 0)
        b.weight("conv.weight", "attention", "conv", masks["conv.weight"])
        b.constant("conv", biases["conv.bias"] != 0)
        b.expand("conv", "flatten", c.n_nodes, channels_last=True, name="flatten")
        b.weight("fc.weight", "flatten", "fc", masks["fc.weight"])
        b.constant("fc", biases["fc.bias"] != 0)
        b.weight("out.weight", "fc", "out", masks["out.weight"])
        b.constant("out", biases["out.bias"] != 0)
        return b.build(sinks=["out"])

    def bias_keys(self) -> dict[str, str]:
        keys = {f"heads.{k}.weight": "attention.bias" for k in range(self.config.heads)}
        keys.update({"conv.weight": "conv.bias", "fc.weight": "fc.bias", "out.weight": "out.bias"})
        return keys

    def block_layouts(self) -> dict[str, BlockLayout]:
        layouts = {n: BlockLayout(whole=self.config.heads > 1) for n in self.scales if n.startswith("heads.")}
        layouts["conv.weight"] = BlockLayout()
        layouts["fc.weight"] = BlockLayout(in_blocks=self.config.filters, channels_last=True)
        layouts["out.weight"] = BlockLayout(columns=False)
        return layouts

    def describe(self) -> dict:
        return {"kind": "gcn", "config": self.config.to_dict()}


class MLP(_Pruned):
    """A ReLU MLP for flat inputs (images); ``widths = (in, hidden..., classes)``.

    >>> m = MLP((64, 32, 10), generator=torch.Generator().manual_seed(0))
    >>> [blk.name for blk in m.graph().blocks]
    ['layers.0.weight', 'layers.1.weight']
    """

    def __init__(self, widths: Sequence[int], *, generator: torch.Generator):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise NetgraphError(f"an MLP needs at least two positive widths, got {widths}")
        self.widths = widths
        self.layers = nn.ModuleList(_Linear(a, b, generator) for a, b in zip(widths[:-1], widths[1:]))
        last = len(widths) - 2
        self.scales = {f"layers.{i}.weight": (1.0 if i == last else math.sqrt(2.0)) / math.sqrt(a)
                       for i, a in enumerate(widths[:-1])}

    def forward(self, x: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            h = h @ self.weight(f"layers.{i}.weight", masks).t() + layer.bias
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def graph(self, masks: Mapping[str, np.ndarray] | None = None) -> LayeredGraph:
        masks = _numpy_masks(self, masks)
        biases = self.numpy_biases()
        b = GraphBuilder()
        b.input("input", self.widths[0])
        src = "input"
        for i in range(len(self.layers)):
            dst = f"layers.{i}"
            b.weight(f"layers.{i}.weight", src, dst, masks[f"layers.{i}.weight"])
            b.constant(dst, biases[f"layers.{i}.bias"] != 0)
            src = dst
        return b.build(sinks=[src])

    def bias_keys(self) -> dict[str, str]:
        return {f"layers.{i}.weight": f"layers.{i}.bias" for i in range(len(self.layers))}

    def block_layouts(self) -> dict[str, BlockLayout]:
        last = len(self.layers) - 1
        return {f"layers.{i}.weight": BlockLayout(columns=i != last) for i in range(len(self.layers))}

    def describe(self) -> dict:
        return {"kind": "mlp", "widths": list(self.widths)}


def _numpy_masks(model: _Pruned, masks) -> dict[str, np.ndarray]:
    shapes = {n: tuple(p.shape) for n, p in model.prunable().items()}
    if masks is None:
        return {n: np.ones(s, dtype=bool) for n, s in shapes.items()}
    out = {}
    for n, s in shapes.items():
        m = masks[n]
        if isinstance(m, torch.Tensor):
            m = m.detach().cpu().numpy()
        out[n] = np.asarray(m) != 0
    return out


def build_model(description: Mapping, *, generator: torch.Generator) -> _Pruned:
    """Rebuild a model from :meth:`describe`'s output (stored in checkpoints)."""
    if description.get("kind") == "gcn":
        return GCN(GCNConfig.from_dict(description["config"]), generator=generator)
    if description.get("kind") == "mlp":
        return MLP(description["widths"], generator=generator)
    raise NetgraphError(f"unknown model description {dict(description)!r}; expected kind 'gcn' or 'mlp'")
