"""Small hand-written models in the styles the tracer must handle (no torchvision needed).

Each factory takes keyword widths so tests stay fast; ``MODELS`` maps a name to
``(factory, input_shape)``.  ``SpecNet`` builds a random architecture from a spec drawn by
``tests.strategies.model_specs``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(widths=(12, 16, 10, 4), bias: bool = True) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: two 3x3 convs, BN, residual add, 1x1 downsample."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet-18 layout (``blocks=(2, 2, 2, 2)``, ``widths=(64, 128, 256, 512)`` is ResNet-18)."""

    def __init__(self, widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1), classes: int = 10, stem: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], stem, 2 if stem == 7 else 1, stem // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layer = []
            for k in range(n):
                layer.append(BasicBlock(cin, w, 2 if (k == 0 and i > 0) else 1))
                cin = w
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18_like(classes: int = 10) -> ResNet:
    """The real ResNet-18 widths and depths (11 M parameters)."""
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), classes)


class VGG(nn.Module):
    """VGG-11-BN layout: conv-BN-ReLU stacks, max-pools, flatten (channels → C·H·W), classifier."""

    def __init__(self, cfg=(8, "M", 16, "M", 16, 16, "M"), hidden: int = 32, classes: int = 10,
                 spatial: int = 2) -> None:
        super().__init__()
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((spatial, spatial))
        self.classifier = nn.Sequential(
            nn.Linear(cin * spatial * spatial, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        x = x.view(x.size(0), -1)
        return self.classifier(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project (linear), residual when it fits."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNet(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(True)),
            InvertedResidual(width, width, 1, 1),
            InvertedResidual(width, 2 * width, 2, 4),
            InvertedResidual(2 * width, 2 * width, 1, 4),
            nn.Sequential(nn.Conv2d(2 * width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width),
                          nn.ReLU6(True)))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * width, classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(True)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(2 * growth), nn.ReLU(True)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseNet(nn.Module):
    """DenseNet layout: each layer reads the concatenation of all previous outputs."""

    def __init__(self, growth: int = 4, layers=(2, 2), init: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, init, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(init)
        blocks, c = [], init
        self.trans = nn.ModuleList()
        for i, n in enumerate(layers):
            block = nn.ModuleList()
            for k in range(n):
                block.append(DenseLayer(c + k * growth, growth))
            blocks.append(block)
            c += n * growth
            if i < len(layers) - 1:
                self.trans.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(True), nn.Conv2d(c, c // 2, 1, bias=False),
                                                nn.AvgPool2d(2, 2)))
                c //= 2
        self.blocks = nn.ModuleList(blocks)
        self.norm5 = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.norm0(self.conv0(x)))
        for i, block in enumerate(self.blocks):
            feats = [x]
            for layer in block:
                feats.append(layer(feats))
            x = torch.cat(feats, 1)
            if i < len(self.trans):
                x = self.trans[i](x)
        x = F.relu(self.norm5(x))
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)


class TinyTransformer(nn.Module):
    """One self-attention block on (N, L, E) tokens: value path keeps channel identity."""

    def __init__(self, dim: int = 8, heads: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        y, _ = self.attn(x, x, x)
        return self.fc(self.norm(x + y).mean(1))


def randomize_bn(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (non-zero shifts)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=generator))
                    m.bias.copy_(torch.randn(n, generator=generator) * 0.5)
    return model


def prune_at_random(model: nn.Module, rate: float, seed: int) -> nn.Module:
    """Zero each Conv2d / Linear weight with probability ``rate`` (plain format), then
    :func:`randomize_bn` with the same generator; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((torch.rand(m.weight.shape, generator=gen) >= rate).to(m.weight.dtype))
    randomize_bn(model, gen)
    return model.eval()


MODELS = {
    "mlp": (mlp, (2, 12)),
    "resnet": (ResNet, (1, 3, 32, 32)),
    "vgg": (VGG, (1, 3, 16, 16)),
    "mobilenet": (MobileNet, (1, 3, 16, 16)),
    "densenet": (DenseNet, (1, 3, 16, 16)),
}


# --------------------------------------------------------------------------------------
# Random architectures from a spec (see tests/strategies.py: model_specs)
# --------------------------------------------------------------------------------------

class SpecNet(nn.Module):
    """A random conv/MLP net: ``spec`` is a dict drawn by ``model_specs()``.

    spec = {"kind": "mlp" | "conv", "in": channels, "size": spatial,
            "layers": [ {"op": ..., ...}, ... ], "head": [widths], "bias": bool}
    Conv layer ops: "conv" (out, k, groups, bn, act), "res" (a residual conv pair with BN),
    "cat" (two branches concatenated), "pool".
    """

    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.spec = spec
        bias = spec["bias"]
        self.body = nn.ModuleList()
        self.ops = []
        c = spec["in"]
        if spec["kind"] == "conv":
            size = spec["size"]
            for layer in spec["layers"]:
                op = layer["op"]
                if op == "conv":
                    out = layer["out"]
                    groups = layer["groups"]
                    if groups == "dw":
                        groups, out = c, c * layer["mult"]
                    mods = [nn.Conv2d(c, out, layer["k"], padding=layer["k"] // 2, groups=groups, bias=bias)]
                    if layer["bn"]:
                        mods.append(nn.BatchNorm2d(out))
                    mods.append(nn.ReLU() if layer["act"] == "relu" else nn.Sigmoid() if layer["act"] == "sigmoid"
                                else nn.Identity())
                    self.body.append(nn.Sequential(*mods))
                    c = out
                elif op == "res":
                    self.body.append(nn.ModuleList([
                        nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=bias), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1, bias=bias), nn.BatchNorm2d(c))]))
                elif op == "cat":
                    out = layer["out"]
                    self.body.append(nn.ModuleList([
                        nn.Conv2d(c, out, 1, bias=bias),
                        nn.Sequential(nn.Conv2d(c, out, 3, padding=1, bias=bias), nn.ReLU())]))
                    c = c + 2 * out
                elif op == "pool":
                    self.body.append(nn.MaxPool2d(2) if size >= 2 else nn.Identity())
                    size = max(1, size // 2)
                self.ops.append(op)
            self.flat = c * size * size
            c = self.flat
        head = []
        for w in spec["head"]:
            head += [nn.Linear(c, w, bias=bias), nn.ReLU()]
            c = w
        head.append(nn.Linear(c, spec["out"], bias=bias))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        for op, mod in zip(self.ops, self.body):
            if op == "res":
                x = F.relu(x + mod[0](x))
            elif op == "cat":
                x = torch.cat([x, mod[0](x), mod[1](x)], dim=1)
            else:
                x = mod(x)
        if self.spec["kind"] == "conv":
            x = x.flatten(1)
        return self.head(x)

    def input_shape(self) -> tuple[int, ...]:
        if self.spec["kind"] == "conv":
            return (2, self.spec["in"], self.spec["size"], self.spec["size"])
        return (2, self.spec["in"])


# --------------------------------------------------------------------------------------
# Local copies of torchvision architectures (same layers, names of the parts and forward
# logic as torchvision 0.2x; used where torchvision is not installed).  Widths are
# torchvision's unless a ``width`` keyword scales them down for fast tests.
# --------------------------------------------------------------------------------------

def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act=nn.ReLU6) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class CifarVGG(nn.Module):
    """VGG with BatchNorm for 32x32 inputs (the pruning papers' VGG-16): conv stacks, five
    max-pools to 1x1, one linear classifier (cfg ``D`` is VGG-16: 13 convs + 1 linear)."""

    D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, cfg=D, classes: int = 10) -> None:
        super().__init__()
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class InvertedResidualV2(nn.Module):
    """torchvision's MobileNetV2 block (no expansion conv when ``expand == 1``)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn_act(cin, hidden, 1)]
        layers += [_conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` (width multiplier ``width``; 1.0 is the real one)."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        c = max(8, int(32 * width))
        last = max(8, int(1280 * max(1.0, width)))
        features = [_conv_bn_act(3, c, 3, 2)]
        for t, ch, n, s in self.SETTINGS:
            out = max(8, int(ch * width))
            for i in range(n):
                features.append(InvertedResidualV2(c, out, s if i == 0 else 1, t))
                c = out
        features.append(_conv_bn_act(c, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's channel shuffle, written with traceable sizes."""
    x = x.view(x.size(0), groups, -1, x.size(2), x.size(3))
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(x.size(0), -1, x.size(3), x.size(4))


class ShuffleUnit(nn.Module):
    """torchvision's ShuffleNetV2 ``InvertedResidual``: split / two branches / cat / shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        bf = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """torchvision's ``shufflenet_v2_x0_5`` (default widths) and friends."""

    def __init__(self, repeats=(4, 8, 4), widths=(24, 48, 96, 192, 1024), classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = widths[0]
        stages = []
        for n, out in zip(repeats, widths[1:4]):
            units = [ShuffleUnit(c, out, 2)] + [ShuffleUnit(out, out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*units))
            c = out
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(nn.Conv2d(c, widths[4], 1, bias=False), nn.BatchNorm2d(widths[4]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(widths[4], classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


class SqueezeExcitation(nn.Module):
    """torchvision's SE block: ``x * sigmoid(fc2(silu(fc1(avgpool(x)))))`` — a gate."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class MBConv(nn.Module):
    """torchvision's EfficientNet MBConv: expand, depthwise, squeeze-excitation, project."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn_act(cin, hidden, 1, act=nn.SiLU)]
        layers += [_conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, cin // 4)),
                   _conv_bn_act(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        out = self.block(x)
        return out + x if self.use_res_connect else out


class EfficientNet(nn.Module):
    """torchvision's ``efficientnet_b0`` (``width`` scales the channels for fast tests)."""

    B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
          (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))

    def __init__(self, classes: int = 1000, width: float = 1.0, depth=None) -> None:
        super().__init__()

        def w(c):
            return max(4, int(round(c * width)))

        layers = [_conv_bn_act(3, w(32), 3, 2, act=nn.SiLU)]
        for i, (t, k, s, cin, cout, n) in enumerate(self.B0):
            n = n if depth is None else min(n, depth)
            stage = [MBConv(w(cin) if j == 0 else w(cout), w(cout), k, s if j == 0 else 1, t) for j in range(n)]
            layers.append(nn.Sequential(*stage))
        last = 4 * w(320)
        layers.append(_conv_bn_act(w(320), last, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(last, classes))

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class _DenseLayer121(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseNetTV(nn.Module):
    """torchvision's DenseNet (``densenet121``: growth 32, blocks (6, 12, 24, 16), 64 initial
    features, bottleneck 4): 7x7 stem, max-pool, dense blocks and transitions."""

    def __init__(self, growth: int = 32, blocks=(6, 12, 24, 16), init: int = 64, bn_size: int = 4,
                 classes: int = 1000) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, init, 7, 2, 3, bias=False)
        self.norm0, self.relu0, self.pool0 = nn.BatchNorm2d(init), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        c = init
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        for i, n in enumerate(blocks):
            self.blocks.append(nn.ModuleList(_DenseLayer121(c + k * growth, growth, bn_size) for k in range(n)))
            c += n * growth
            if i < len(blocks) - 1:
                self.transitions.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                                      nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)))
                c //= 2
        self.norm5 = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        x = self.pool0(self.relu0(self.norm0(self.conv0(x))))
        for i, block in enumerate(self.blocks):
            feats = [x]
            for layer in block:
                feats.append(layer(feats))
            x = torch.cat(feats, 1)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        x = F.adaptive_avg_pool2d(F.relu(self.norm5(x)), (1, 1))
        return self.classifier(torch.flatten(x, 1))


#: torchvision-style architectures: name -> (factory, a small input shape for tests)
TORCHVISION_LIKE = {
    "vgg16_bn_cifar": (CifarVGG, (1, 3, 32, 32)),
    "resnet18": (lambda: resnet18_like(1000), (1, 3, 64, 64)),
    "mobilenet_v2": (MobileNetV2, (1, 3, 64, 64)),
    "shufflenet_v2_x0_5": (ShuffleNetV2, (1, 3, 64, 64)),
    "efficientnet_b0": (EfficientNet, (1, 3, 64, 64)),
    "densenet121": (DenseNetTV, (1, 3, 64, 64)),
}
