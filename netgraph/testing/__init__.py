"""Testing helpers for connectivity code, shipped with the library.

``netgraph.testing.models``  small hand-written models (torchvision-style ResNet, VGG,
                             MobileNet, DenseNet, gated blocks, …) used by the suite and the
                             benchmarks; imports torch.
"""
