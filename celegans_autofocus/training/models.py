# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Regression models: one grayscale channel in, ``outputs`` values out.

Output 0 is offset / output_scale; with ``outputs=2`` (the Gaussian NLL head) output 1 is the log-variance
of that offset, in (output units)^2.

Any timm name, plus ``plain7``: a 7-layer plain CNN (236 k parameters) that learns the task from
scratch on a CPU far faster than the timm models (benchmarks/train_default_model.py; models/MODEL_CARD.md),
and ``resnet18_half``: timm's ResNet18 with half the channels at every stage (2.8 M parameters, 11 MB), about
plain7's cost per training step at 96 px (benchmarks/architectures.md: ResNet18 learns fastest per step).
"""
from __future__ import annotations

import torch

PAPER_ARCHS = ("convnextv2_tiny", "convnextv2_pico", "resnet18", "mobilenetv3_small_100", "mobilenetv3_large_100")


class ArchError(ValueError):
    """An architecture name timm does not know, or weights that cannot be had."""


def plain_cnn(widths: tuple[int, ...] = (16, 32, 32, 64, 64, 96, 128),
              strides: tuple[int, ...] = (1, 2, 1, 2, 1, 2, 2), outputs: int = 1) -> torch.nn.Module:
    """3x3 conv + BatchNorm + ReLU per width, global average pool, linear head (small-initialised)."""
    nn = torch.nn
    layers: list[nn.Module] = []
    channels_in = 1
    for width, stride in zip(widths, strides):
        layers += [nn.Conv2d(channels_in, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        channels_in = width
    head = nn.Linear(channels_in, outputs)
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    _shrink_head(head)
    return model


def resnet18_half(outputs: int = 1) -> torch.nn.Module:
    """Build timm's ResNet18 with channels (32, 64, 128, 256) and a 32-channel stem; small-initialised head."""
    import timm

    model = timm.create_model("resnet18", in_chans=1, num_classes=outputs, channels=(32, 64, 128, 256),
                              stem_width=32)
    _shrink_head(model.get_classifier())
    return model


CUSTOM_ARCHS = {"plain7": plain_cnn, "resnet18_half": resnet18_half}


def create_model(arch: str, pretrained: bool = False, outputs: int = 1) -> torch.nn.Module:
    """Build ``arch`` with timm (in_chans=1, num_classes=outputs): small-initialised head, clear errors."""
    if arch in CUSTOM_ARCHS:
        if pretrained:
            raise ArchError(f"{arch!r} has no pretrained weights; train it with pretrained=False")
        return CUSTOM_ARCHS[arch](outputs=outputs)
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8] if arch else []
        hint = f"; similar: {', '.join(close)}" if close else f"; e.g. {', '.join(PAPER_ARCHS)}"
        raise ArchError(f"unknown architecture {arch!r} (not a timm model name){hint}")
    try:
        model = timm.create_model(arch, pretrained=pretrained, in_chans=1, num_classes=outputs)
    except Exception as exc:  # hub/network/cache errors come in many types
        if not pretrained:
            raise
        raise ArchError(f"cannot get pretrained weights for {arch!r} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); this machine may have no "
                        "access to the model hub: train with pretrained=False or fill the HF cache") from None
    _shrink_head(model.get_classifier() if hasattr(model, "get_classifier") else None)
    return model


def _shrink_head(head: torch.nn.Module | None, factor: float = 0.05) -> None:
    """Scale the regression head's initial weights down (bias 0).

    The first outputs are near 0, so the first loss is about the target variance instead of a random
    blow-up, while gradients still flow.
    """
    if isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            head.weight.mul_(factor)
            if head.bias is not None:
                head.bias.zero_()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
