"""The image backbones BiRefNet is built on: Swin Transformer v1 (``swin``) and PVT v2 (``pvt``)."""
