"""BiRefNet for inference, with module names that make official state dicts load with strict=True.

Two designs exist. ``v1`` is the code of May 2024 onward (every checkpoint on the GitHub release
``v1`` and the Hugging Face ``ZhengPeng7/*`` repos): three deformable ASPP branches (k = 1, 3, 7),
an image-patch branch and a gradient-attention branch at the deepest decoder level. ``v0`` is the
paper-era code (``BiRefNet-DIS_ep580.pth``, ``BiRefNet-massive-epoch_240.pth``): one 3x3
deformable ASPP branch, no ``ipt_blk5`` and no level-4 gradient attention.

``patch_order`` decides how image patches are stacked into channels for the ``ipt_blk*``
branches. The official code changed it on 2024-11-05 without changing any weight shape, so a
checkpoint only gives its best output with the order it was trained with (see ``bgone.weights.variants``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from bgone.nn.backbones.pvt import PVT_SPECS, PyramidVisionTransformerV2
from bgone.nn.backbones.swin import SWIN_SPECS, SwinTransformer
from bgone.nn.deform_conv import DEFORM_METHODS, DeformMethod, deform_conv2d
from bgone.nn.types import DESIGNS, PATCH_ORDERS, Design, PatchOrder

BACKBONES: tuple[str, ...] = (*SWIN_SPECS, *PVT_SPECS)
INTER_CHANNELS = 64  # dec_channels_inter == 'fixed'
ASPP_CHANNELS = 256
GRADIENT_CHANNELS = 16


@dataclass(frozen=True)
class ArchConfig:
    """Everything that decides the network's shape and its forward computation."""

    backbone: str = "swin_v1_l"
    design: Design = "v1"
    patch_order: PatchOrder = "einops"
    # Official training builds BatchNorm only when batch_size > 1; checkpoints trained with
    # batch_size == 1 have Identity there and no BN keys.
    batch_norm: bool = True

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(BACKBONES)}")
        if self.design not in DESIGNS:
            raise ValueError(f"unknown design {self.design!r}; expected 'v1' or 'v0'")
        if self.patch_order not in PATCH_ORDERS:
            raise ValueError(f"unknown patch_order {self.patch_order!r}; expected 'einops' or 'legacy'")

    def with_(self, **changes: object) -> ArchConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def backbone_channels(self) -> tuple[int, ...]:
        """Backbone stage channels, shallowest first."""
        spec = SWIN_SPECS.get(self.backbone) or PVT_SPECS[self.backbone]
        return spec.channels

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Decoder channels, deepest first, doubled by the multi-scale ('cat') input."""
        c = [2 * ch for ch in reversed(self.backbone_channels)]
        return c[0], c[1], c[2], c[3]


def build_backbone(name: str) -> nn.Module:
    if name in SWIN_SPECS:
        return SwinTransformer(SWIN_SPECS[name])
    return PyramidVisionTransformerV2(PVT_SPECS[name])


def _norm(channels: int, enabled: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if enabled else nn.Identity()


def _resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def image_to_patches(x: torch.Tensor, size: tuple[int, int] | torch.Size, order: PatchOrder) -> torch.Tensor:
    """Cut the image into a grid of patches of ``size`` and stack them on the channel axis.

    einops: channel = (c, patch row, patch column); legacy: channel = (patch column, patch row, c).
    """
    batch, channels, height, width = x.shape
    ph, pw = size[0], size[1]  # no int(): exported graphs keep these symbolic
    gh, gw = height // ph, width // pw
    if gh * ph != height or gw * pw != width:
        raise ValueError(
            f"image of {height}x{width} cannot be cut into {ph}x{pw} patches; sides must be multiples of 32"
        )
    grid = x.view(batch, channels, gh, ph, gw, pw)
    grid = grid.permute(0, 1, 2, 4, 3, 5) if order == "einops" else grid.permute(0, 4, 2, 1, 3, 5)
    return grid.reshape(batch, channels * gh * gw, ph, pw)


class DeformableConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        taps = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, padding=self.padding)
        self.modulator_conv = nn.Conv2d(in_channels, taps, kernel_size, padding=self.padding)
        self.regular_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=self.padding, bias=False)
        self.fast_paths = True
        self.deform_method: DeformMethod = "gather"  # of the fast path; exports pick "op" or "grid_sample"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast_paths:  # the official formulation, kept as the benchmarks' baseline
            offset = self.offset_conv(x)
            mask = 2.0 * torch.sigmoid(self.modulator_conv(x))
            return deform_conv2d(
                x, offset, self.regular_conv.weight, None, padding=self.padding, mask=mask, method="grid_sample"
            )
        # Offsets and modulation read the same window: one convolution with both filter banks.
        taps = self.modulator_conv.out_channels
        both = F.conv2d(
            x,
            torch.cat((self.offset_conv.weight, self.modulator_conv.weight)),
            torch.cat((self.offset_conv.bias, self.modulator_conv.bias)),
            padding=self.padding,
        )
        offset, modulation = both[:, : 2 * taps], both[:, 2 * taps :]
        mask = 2.0 * torch.sigmoid(modulation)
        return deform_conv2d(
            x, offset, self.regular_conv.weight, None, padding=self.padding, mask=mask, method=self.deform_method
        )


class _ASPPModuleDeformable(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, batch_norm: bool) -> None:
        super().__init__()
        self.atrous_conv = DeformableConv2d(in_channels, out_channels, kernel_size)
        self.bn = _norm(out_channels, batch_norm)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPPDeformable(nn.Module):
    def __init__(self, channels: int, kernel_sizes: tuple[int, ...], batch_norm: bool) -> None:
        super().__init__()
        self.aspp1 = _ASPPModuleDeformable(channels, ASPP_CHANNELS, 1, batch_norm)
        self.aspp_deforms = nn.ModuleList(
            _ASPPModuleDeformable(channels, ASPP_CHANNELS, k, batch_norm) for k in kernel_sizes
        )
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(channels, ASPP_CHANNELS, 1, bias=False),
            _norm(ASPP_CHANNELS, batch_norm),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(ASPP_CHANNELS * (2 + len(kernel_sizes)), channels, 1, bias=False)
        self.bn1 = _norm(channels, batch_norm)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)
        self.fast_paths = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.aspp1, *self.aspp_deforms]
        if not self.fast_paths:
            first = self.aspp1(x)
            outs = [first, *(branch(x) for branch in self.aspp_deforms)]
            pooled = self.global_avg_pool(x).expand(-1, -1, *first.shape[-2:])
            fused = self.conv1(torch.cat((*outs, pooled), dim=1))
        else:
            fused = self._fused_branches(x, branches)
        return self.dropout(self.relu(self.bn1(fused)))

    def _fused_branches(self, x: torch.Tensor, branches: list[nn.Module]) -> torch.Tensor:
        """conv1 over the concatenated branches, without the concatenation.

        A 1x1 convolution over concatenated channels is the sum of one matmul per branch, accumulated
        in place over (pixels, channels) rows; the pooled branch is constant over the map, so its share
        is a per-image bias. No 1280-channel map is ever built.
        """
        batch, _, height, width = x.shape
        weight = self.conv1.weight.flatten(1)  # (out, 256 * (branches + 1))
        acc: torch.Tensor | None = None
        for i, branch in enumerate(branches):
            rows = branch(x).permute(0, 2, 3, 1).reshape(batch * height * width, ASPP_CHANNELS)
            part = weight[:, i * ASPP_CHANNELS : (i + 1) * ASPP_CHANNELS].t()
            acc = rows @ part if acc is None else acc.addmm_(rows, part)
        assert acc is not None
        pooled = self.global_avg_pool(x).flatten(1)  # (B, 256)
        pooled_share = pooled @ weight[:, len(branches) * ASPP_CHANNELS :].t()  # (B, out)
        acc = acc.view(batch, height * width, -1).add_(pooled_share[:, None, :])
        return acc.view(batch, height, width, -1).permute(0, 3, 1, 2)


class BasicDecBlk(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...], batch_norm: bool) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, INTER_CHANNELS, 3, 1, padding=1)
        self.relu_in = nn.ReLU(inplace=True)
        self.dec_att = ASPPDeformable(INTER_CHANNELS, kernel_sizes, batch_norm)
        self.conv_out = nn.Conv2d(INTER_CHANNELS, out_channels, 3, 1, padding=1)
        self.bn_in = _norm(INTER_CHANNELS, batch_norm)
        self.bn_out = _norm(out_channels, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu_in(self.bn_in(self.conv_in(x)))
        return self.bn_out(self.conv_out(self.dec_att(x)))


class SimpleConvs(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, INTER_CHANNELS, 3, 1, 1)
        self.conv_out = nn.Conv2d(INTER_CHANNELS, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv1(x))


class BasicLatBlk(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _gradient_convs(channels: int, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, GRADIENT_CHANNELS, 3, 1, 1), _norm(GRADIENT_CHANNELS, batch_norm), nn.ReLU(inplace=True)
    )


def _head(in_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, 1, 1, 1, 0))


class Decoder(nn.Module):
    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        c = arch.channels
        bn = arch.batch_norm
        v1 = arch.design == "v1"
        kernel_sizes = (1, 3, 7) if v1 else (3,)
        # Training-only heads (conv_ms_spvn_*, gdt_convs_pred_*) are built so that strict loading works.
        if v1:
            self.ipt_blk5 = SimpleConvs(3 * 32**2, c[0] // 8)
        self.ipt_blk4 = SimpleConvs(3 * 16**2, c[0] // 8)
        self.ipt_blk3 = SimpleConvs(3 * 8**2, c[1] // 8)
        self.ipt_blk2 = SimpleConvs(3 * 4**2, c[2] // 8)
        self.ipt_blk1 = SimpleConvs(3, c[3] // 8)

        self.decoder_block4 = BasicDecBlk(c[0] + (c[0] // 8 if v1 else 0), c[1], kernel_sizes, bn)
        self.decoder_block3 = BasicDecBlk(c[1] + c[0] // 8, c[2], kernel_sizes, bn)
        self.decoder_block2 = BasicDecBlk(c[2] + c[1] // 8, c[3], kernel_sizes, bn)
        self.decoder_block1 = BasicDecBlk(c[3] + c[2] // 8, c[3] // 2, kernel_sizes, bn)
        self.conv_out1 = _head(c[3] // 2 + c[3] // 8)

        self.lateral_block4 = BasicLatBlk(c[1], c[1])
        self.lateral_block3 = BasicLatBlk(c[2], c[2])
        self.lateral_block2 = BasicLatBlk(c[3], c[3])

        self.conv_ms_spvn_4 = nn.Conv2d(c[1], 1, 1, 1, 0)
        self.conv_ms_spvn_3 = nn.Conv2d(c[2], 1, 1, 1, 0)
        self.conv_ms_spvn_2 = nn.Conv2d(c[3], 1, 1, 1, 0)

        levels = (4, 3, 2) if v1 else (3, 2)
        level_channels = {4: c[1], 3: c[2], 2: c[3]}
        for level in levels:
            self.add_module(f"gdt_convs_{level}", _gradient_convs(level_channels[level], bn))
        for level in levels:
            self.add_module(f"gdt_convs_pred_{level}", _head(GRADIENT_CHANNELS))
        for level in levels:
            self.add_module(f"gdt_convs_attn_{level}", _head(GRADIENT_CHANNELS))
        self.gradient_levels = levels
        self.fast_paths = True

    def _patches(self, block: nn.Module, image: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return block(_resize(image_to_patches(image, size, self.arch.patch_order), size))

    def _gradient_attention(self, level: int, p: torch.Tensor) -> torch.Tensor:
        if level not in self.gradient_levels:
            return p
        features = getattr(self, f"gdt_convs_{level}")(p)
        return p * torch.sigmoid(getattr(self, f"gdt_convs_attn_{level}")(features))

    def forward(
        self, image: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor, x4: torch.Tensor
    ) -> torch.Tensor:
        if self.arch.design == "v1":
            x4 = torch.cat((x4, self._patches(self.ipt_blk5, image, x4.shape[-2:])), dim=1)
        p4 = self._gradient_attention(4, self.decoder_block4(x4))

        p3 = _resize(p4, x3.shape[-2:]) + self.lateral_block4(x3)
        p3 = torch.cat((p3, self._patches(self.ipt_blk4, image, x3.shape[-2:])), dim=1)
        p3 = self._gradient_attention(3, self.decoder_block3(p3))

        p2 = _resize(p3, x2.shape[-2:]) + self.lateral_block3(x2)
        p2 = torch.cat((p2, self._patches(self.ipt_blk3, image, x2.shape[-2:])), dim=1)
        p2 = self._gradient_attention(2, self.decoder_block2(p2))

        p1 = _resize(p2, x1.shape[-2:]) + self.lateral_block2(x1)
        p1 = torch.cat((p1, self._patches(self.ipt_blk2, image, x1.shape[-2:])), dim=1)
        p1 = self.decoder_block1(p1)
        if self.fast_paths:
            return self._fused_head(p1, image)
        p1 = _resize(p1, image.shape[-2:])
        p1 = torch.cat((p1, self.ipt_blk1(image)), dim=1)
        return self.conv_out1(p1)

    def _fused_head(self, p1: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``conv_out1(cat(resize(p1), ipt_blk1(image)))`` without any many-channel full-size map.

        The head is a 1x1 convolution, so it splits over the concatenation; on the ``p1`` side it
        commutes with the (linear) bilinear resize, so it runs at quarter size and only its one channel
        is resized; on the image side it folds into ``ipt_blk1.conv_out`` (3x3 then 1x1 is one 3x3).
        """
        head = self.conv_out1[0]
        split = p1.shape[1]
        w_head = head.weight.flatten(1).float()  # (1, split + c8)
        conv_out = self.ipt_blk1.conv_out
        folded_weight = torch.einsum("k,kcij->cij", w_head[0, split:], conv_out.weight.float())[None]
        folded_bias = head.bias.float() + w_head[:, split:] @ conv_out.bias.float()
        from_image = F.conv2d(
            self.ipt_blk1.conv1(image),
            folded_weight.to(image.dtype),
            folded_bias.to(image.dtype),
            padding=conv_out.padding,
        )
        from_decoder = F.conv2d(p1, head.weight[:, :split])
        return _resize(from_decoder, image.shape[-2:]) + from_image


class BiRefNet(nn.Module):
    """``forward(x)``: normalised images (B, 3, H, W), H and W multiples of 32 → logits (B, 1, H, W)."""

    def __init__(self, arch: ArchConfig | None = None) -> None:
        super().__init__()
        self.arch = arch or ArchConfig()
        c = self.arch.channels
        context = sum(c[1:])  # x1, x2, x3 resized to x4's size and stacked before it (cxt_num = 3)
        self.bb = build_backbone(self.arch.backbone)
        kernel_sizes = (1, 3, 7) if self.arch.design == "v1" else (3,)
        self.squeeze_module = nn.Sequential(BasicDecBlk(c[0] + context, c[0], kernel_sizes, self.arch.batch_norm))
        self.decoder = Decoder(self.arch)
        # Set by bgone.load_model: the registry entry (if any) and the file the weights came from.
        self.variant: object | None = None
        self.checkpoint_path: object | None = None

    @property
    def patch_order(self) -> PatchOrder:
        return self.arch.patch_order

    def set_fast_paths(self, enabled: bool) -> None:
        """Turn the fast formulations on (the default) or off.

        Off is the official computation step by step: ``grid_sample`` deformable sampling in float32,
        concatenated ASPP branches, NCHW feature maps. Both give the same result up to float rounding;
        the benchmarks time "off" in float32 as the baseline every speed-up is measured against.
        """
        for module in self.modules():
            if hasattr(module, "fast_paths"):
                module.fast_paths = enabled

    def set_deform_method(self, method: DeformMethod) -> None:
        """How the fast path samples deformable convolutions: "gather" (the default), "grid_sample", or
        "op" (one ``bgone::deform_conv2d`` operator, exported to ONNX as ``DeformConv``)."""
        if method not in DEFORM_METHODS:
            raise ValueError(
                f"unknown deformable-convolution method {method!r}; use one of {', '.join(DEFORM_METHODS)}"
            )
        for module in self.modules():
            if isinstance(module, DeformableConv2d):
                module.deform_method = method

    def set_patch_order(self, order: PatchOrder) -> None:
        """Switch the patch order without reloading weights (weight shapes do not depend on it)."""
        self.arch = self.arch.with_(patch_order=order)
        self.decoder.arch = self.arch

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = x.shape[-2:]
        full = self.bb(x)
        half = self.bb(F.interpolate(x, size=(height // 2, width // 2), mode="bilinear", align_corners=True))
        x1, x2, x3, x4 = (torch.cat((f, _resize(h, f.shape[-2:])), dim=1) for f, h in zip(full, half, strict=True))
        size = x4.shape[-2:]
        x4 = torch.cat((_resize(x1, size), _resize(x2, size), _resize(x3, size), x4), dim=1)
        return x1, x2, x3, x4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"BiRefNet expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % 32 or width % 32 or height == 0 or width == 0:
            raise ValueError(f"BiRefNet needs height and width that are multiples of 32, got {height}x{width}")
        x1, x2, x3, x4 = self.encode(x)
        x4 = self.squeeze_module(x4)
        return self.decoder(x, x1, x2, x3, x4)
