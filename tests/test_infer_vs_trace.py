"""Two independent routes to the same graph: chain inference from a state_dict's shapes
(no model code) and torch.fx tracing of the model.  On Sequential conv/linear stacks, with
BatchNorm, biases, pooling and a flatten, the plain-chain inference (``skips="none"``) and the
trace give identical audits; the default inference (identity skips between equal-width
groups over-approximated) is sound: it never calls a weight dead that the trace finds live."""

from __future__ import annotations

import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy as np

from netgraph import audit, graph_from_checkpoint, load_checkpoint, reachability, trace_model


@st.composite
def sequential_convnets(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    channels = [draw(st.integers(1, 4))]
    layers: list[nn.Module] = []
    size = 8
    for _ in range(draw(st.integers(1, 3))):
        c = draw(st.integers(1, 5))
        layers.append(nn.Conv2d(channels[-1], c, 3, padding=1, bias=draw(st.booleans())))
        if draw(st.booleans()):
            bn = nn.BatchNorm2d(c)
            with torch.no_grad():  # as after training: non-trivial statistics and shifts
                bn.running_mean.copy_(torch.randn(c, generator=g) * (torch.rand(c, generator=g) < 0.5))
                bn.bias.copy_(torch.randn(c, generator=g) * (torch.rand(c, generator=g) < 0.5))
            layers.append(bn)
        layers.append(nn.ReLU())
        if draw(st.booleans()) and size > 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        channels.append(c)
    layers.append(nn.Flatten())
    hidden = draw(st.integers(1, 6))
    layers += [nn.Linear(channels[-1] * size * size, hidden), nn.ReLU(), nn.Linear(hidden, draw(st.integers(1, 4)))]
    model = nn.Sequential(*layers)
    rate = draw(st.sampled_from([0.3, 0.7, 0.9, 0.97]))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((torch.rand(m.weight.shape, generator=g) > rate).float())
                if isinstance(m, nn.Conv2d) and draw(st.booleans()):
                    m.weight[int(torch.randint(m.out_channels, (1,), generator=g))] = 0.0  # a channel no input
                    # reaches: only its bias / BN shift feeds the next layer (a constant source)
                if m.bias is not None:
                    m.bias.mul_((torch.rand(m.bias.shape, generator=g) < 0.5).float())
    return model.eval(), (1, channels[0], 8, 8)


@settings(max_examples=25)
@given(sequential_convnets())
def test_chain_inference_and_fx_trace_give_the_same_audit(tmp_path_factory, net):
    model, shape = net
    path = tmp_path_factory.mktemp("seq") / "model.pt"
    torch.save(model.state_dict(), path)
    ckpt = load_checkpoint(path)
    from_file = audit(graph_from_checkpoint(ckpt, skips="none")).to_dict()
    traced = trace_model(model, shape)
    from_model = traced.audit(resolution="channel").to_dict()  # a state_dict has no spatial sizes
    assert from_file["layers"] == from_model["layers"]
    assert from_file["summary"].pop("topology") == "inferred-chain"
    assert from_model["summary"].pop("topology") in ("traced", "declared")
    assert from_file["summary"] == from_model["summary"]
    # the default (plausible skips) is sound against the trace, weight by weight
    sound = graph_from_checkpoint(ckpt)
    r_file, r_model = reachability(sound), traced.reachability()
    masks = {k: w.mask for k, w in ckpt.prunable().items()}
    for b in traced.graph.weighted_blocks:
        live = r_model.weight_states(b, masks[b.name]).effective
        said = r_file.weight_states(sound.block(b.name), masks[b.name]).effective
        assert not np.any(live & ~said), b.name
