"""timm regression models: one grayscale channel in, one value out (offset / output_scale)."""
from __future__ import annotations

import torch

PAPER_ARCHS = ("convnextv2_tiny", "convnextv2_pico", "resnet18", "mobilenetv3_small_100", "mobilenetv3_large_100")


class ArchError(ValueError):
    """An architecture name timm does not know, or weights that cannot be had."""


def create_model(arch: str, pretrained: bool = False) -> torch.nn.Module:
    """``timm.create_model(arch, pretrained, in_chans=1, num_classes=1)``, small-initialised head, clear errors."""
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8] if arch else []
        hint = f"; similar: {', '.join(close)}" if close else f"; e.g. {', '.join(PAPER_ARCHS)}"
        raise ArchError(f"unknown architecture {arch!r} (not a timm model name){hint}")
    try:
        model = timm.create_model(arch, pretrained=pretrained, in_chans=1, num_classes=1)
    except Exception as exc:  # hub/network/cache errors come in many types
        if not pretrained:
            raise
        raise ArchError(f"cannot get pretrained weights for {arch!r} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); this machine may have no "
                        "access to the model hub: train with pretrained=False or fill the HF cache") from None
    _shrink_head(model)
    return model


def _shrink_head(model: torch.nn.Module, factor: float = 0.05) -> None:
    """Scale the regression head's initial weights down (bias 0): the first outputs are near 0, so the
    first loss is about the target variance instead of a random blow-up, while gradients still flow."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            head.weight.mul_(factor)
            if head.bias is not None:
                head.bias.zero_()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
