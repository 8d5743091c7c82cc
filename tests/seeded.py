"""Deterministic stand-in weights for a BiRefNet state dict.

No real checkpoint can be downloaded where the tests run, so parity with the
official implementation is checked on weights that anyone can regenerate from
a key list and a seed. Every tensor depends only on (seed, key, shape), never
on iteration order, so a key list can be filtered or reordered freely.

    python seeded.py keys/swin_v1_t.json --seed 1 --out w.pth [--prefix module.]
"""

import argparse
import json
import math
import zlib

import torch


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63))


def relative_position_index(window: int) -> torch.Tensor:
    """Swin v1 relative position index for a window of `window` x `window` tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def seeded_tensor(seed: int, key: str, shape, dtype: str) -> torch.Tensor:
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("relative_position_index"):
        return relative_position_index(math.isqrt(shape[0]))
    g = _generator(seed, key)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if key.endswith("relative_position_bias_table"):
        return 0.1 * torch.randn(shape, generator=g)
    if key.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:  # norm weights
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)


def seeded_state_dict(spec, seed: int) -> dict:
    """spec: iterable of [key, shape, dtype] as stored in keys/*.json."""
    return {key: seeded_tensor(seed, key, shape, dtype) for key, shape, dtype in spec}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("keys")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--prefix", default="", help="e.g. 'module.' or '_orig_mod.' to mimic saved training checkpoints")
    a = p.parse_args()
    spec = json.load(open(a.keys))["keys"]
    sd = seeded_state_dict(spec, a.seed)
    if a.out.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({a.prefix + k: v.contiguous() for k, v in sd.items()}, a.out)
    else:
        torch.save({a.prefix + k: v for k, v in sd.items()}, a.out)
