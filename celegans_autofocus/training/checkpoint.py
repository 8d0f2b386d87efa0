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

"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with weights_only=True.

Layout: ``{"format": 1, "model": state_dict, "optimizer": ..., "scheduler": ..., "epoch": int,
"config": TrainConfig.to_dict(), "best_val_mae_steps": float|None, "history": [dict],
"train_data_hash": str, "input_view": str, "train_plates": [...], "val_plates": [...], "step_um": float,
"world_size": int (DDP processes), "source_commit": str (training/provenance.py)}``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.atomic import atomic_path
from .config import ConfigError, TrainConfig
from .models import create_model

FORMAT = 1
#: Checkpoint key: its BatchNorms are an export's folded ones (identity statistics), which training keeps frozen.
FROZEN_NORMS = "frozen_norms"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (names the path)."""


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: Path | str) -> dict:
    """Load the checkpoint dict with ``weights_only=True``; :class:`CheckpointError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a celegans-autofocus checkpoint (format {FORMAT})")
    return state


def checkpoint_config(state: dict, path: Path | str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad config in checkpoint: {exc}") from None


def model_from_checkpoint(path: Path | str, arch: str | None = None) -> tuple[torch.nn.Module, dict, TrainConfig]:
    """(model in eval mode with the checkpoint's weights, state, config). ``arch`` must match if given."""
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    if arch is not None and arch != cfg.arch:
        raise CheckpointError(f"{path}: checkpoint is a {cfg.arch!r} model, not {arch!r}")
    model = create_model(cfg.arch, pretrained=False, outputs=cfg.outputs)
    load_weights(model, state["model"], path, cfg.arch)
    model.eval()
    return model, state, cfg


def load_weights(model: torch.nn.Module, weights: dict, path: Path | str, arch: str) -> None:
    """``load_state_dict`` strictly; a mismatch becomes a :class:`CheckpointError` naming both."""
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit a {arch!r} model (checkpoint from another "
                              f"architecture?): {first}") from None
