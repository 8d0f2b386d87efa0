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

"""The model a run starts from (``train --init``, ``finetune``): an exported ONNX file or a training checkpoint.

One home for the rule "is this an export, and what does it say about itself": the weights, the architecture, the
outputs, the preprocessing, and whether its BatchNorms are folded (:data:`training.checkpoint.FROZEN_NORMS`: an
export's are, and so are a checkpoint's of a run that started from one).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.images import PreprocessSpec
from ..core.predictor import ModelError, is_onnx_model
from ..core.sensor import STEP_UM
from .checkpoint import FROZEN_NORMS, model_from_checkpoint
from .config import head_outputs
from .onnx_import import model_from_onnx


@dataclass
class Parent:
    """The model a run starts from: ``finetune``'s parent, or ``train --init``."""

    path: Path
    model: torch.nn.Module
    arch: str
    spec: PreprocessSpec
    output_scale: float
    step_um: float
    input_view: str
    train_data_hash: str
    sigma: bool = False  # the Gaussian NLL head (a second output, the log-variance): fine-tuned with its loss
    loss: str = "unknown"  # the loss that trained it (metadata ``loss``; absent in older exports)
    frozen_norms: bool = False  # BatchNorms folded (an export, or a checkpoint of a run from one): FROZEN_NORMS

    @property
    def outputs(self) -> int:
        """Return the raw outputs: 2 with the Gaussian NLL head (mean, log-variance)."""
        return head_outputs(self.sigma)

    @property
    def finetune_loss(self) -> str:
        """``huber_nll`` for a parent it trained, else beta-NLL (``gaussian_nll``) for a sigma head, else Huber."""
        if self.sigma:
            return "huber_nll" if self.loss == "huber_nll" else "gaussian_nll"
        return "huber"

    def describe(self) -> dict:
        """Return the provenance recorded in the fine-tuned model's metadata (``parent_model``)."""
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        return {"file": self.path.name, "sha256": digest, "arch": self.arch, "train_data_hash": self.train_data_hash}


def load_parent(path: Path | str) -> Parent:
    """Load an exported ``.onnx`` (plain7, resnet18_half) or a ``.pt`` checkpoint as a :class:`Parent`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if is_onnx_model(path):
        model, meta = model_from_onnx(path)
        return Parent(path, model, meta["arch"], PreprocessSpec.from_dict(meta["preprocess"]),
                      float(meta["output_scale"]), float(meta["step_um"]), meta.get("input_view", "mixed"),
                      str(meta.get("train_data_hash", "unknown")), bool(meta.get("sigma_output")),
                      str(meta.get("loss", "unknown")), frozen_norms=True)
    model, state, cfg = model_from_checkpoint(path)
    return Parent(path, model, cfg.arch, cfg.spec, float(cfg.output_scale),
                  float(state.get("step_um", STEP_UM)), state.get("input_view", "mixed"),
                  str(state.get("train_data_hash", "unknown")), cfg.uncertainty, cfg.loss,
                  frozen_norms=bool(state.get(FROZEN_NORMS, False)))
