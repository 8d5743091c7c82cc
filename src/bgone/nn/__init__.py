"""The network: tensors in, logits out. ``birefnet`` (the model and its ``ArchConfig``), ``deform_conv``
(deformable convolution in pure PyTorch), ``backbones/`` (Swin and PVT v2) and ``types`` (names that
need no torch). Knows nothing about files, HTTP or the registry; imports nothing outside itself."""
