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

"""Checkpoint -> ONNX (dynamo, opset 18, dynamic batch) with our metadata, then a parity check.

The model maps ``image`` float32 (N, 1, input_px, input_px) to ``offset_steps`` float32 (N, 1) in
units of ``output_scale`` steps; a model with the Gaussian NLL head has a second output ``offset_sigma``
float32 (N, 1), its predicted standard deviation ``exp(log_var / 2)`` in the same units, named in the
metadata as ``sigma_output``. The metadata JSON (docs/architecture.md) goes into ``metadata_props`` under
``celegans_autofocus``. Parity: ONNX Runtime against torch on random and real-looking inputs, as the
max abs difference in steps (each output); above ``PARITY_TOL_STEPS`` the export fails and no file is left behind.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_path
from ..core.predictor import METADATA_KEY, SCHEMA_VERSION
from ..core.sensor import STEP_UM
from .checkpoint import model_from_checkpoint

#: 1% of a motor step (0.05 um): immaterial to a controller that moves whole steps. Measured torch/ONNX Runtime
#: differences: 2e-5-4e-5 steps for the timm models of benchmarks/architectures.md, but 2.0e-3 (mobilenetv3_small_100)
#: and 2.8e-3 (mobilenetv3_large_100) when trained with Adam at 1e-4 (architectures_paper.json), over the old 1e-3.
PARITY_TOL_STEPS = 1e-2
OPSET = 18
INPUT_NAME, OUTPUT_NAME, SIGMA_NAME = "image", "offset_steps", "offset_sigma"
#: log-variance clamp of the exported sigma (as in the training loss): sigma in [exp(-10), exp(10)] output units.
LOG_VAR_RANGE = (-20.0, 20.0)


class ExportError(RuntimeError):
    """The ONNX export or its parity check failed."""


def build_metadata(state: dict, cfg) -> dict:
    """Build the model metadata (schema 1, docs/architecture.md) for a checkpoint and its TrainConfig.

    ``step_um`` is the training data's (``stack.yaml``), recorded in the checkpoint; checkpoints older than
    that get the sensor's. A fine-tuned checkpoint's ``parent_model`` (the model it started from) is kept.
    """
    best = state.get("best_val_mae_steps")
    parent = {"parent_model": state["parent_model"]} if "parent_model" in state else {}
    return {
        "schema": SCHEMA_VERSION,
        "preprocess": cfg.spec.to_dict(),
        "step_um": float(state.get("step_um", STEP_UM)),
        "arch": cfg.arch,
        "output": OUTPUT_NAME,
        "output_scale": float(cfg.output_scale),
        "input_view": state.get("input_view", "mixed"),
        "train_data_hash": state.get("train_data_hash", "unknown"),
        "epochs": int(state.get("epoch", 0)),
        "val_mae_steps": None if best is None or not np.isfinite(best) else round(float(best), 3),
        "source_commit": state.get("source_commit", "unknown"),
        "loss": cfg.loss,
        **({"sigma_output": SIGMA_NAME} if cfg.uncertainty else {}),
        **parent,
    }


class WithSigma(torch.nn.Module):
    """(offset, sigma) from a two-output (mean, log-variance) model: the exported graph of the NLL head."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out[:, :1], torch.exp(0.5 * out[:, 1:2].clamp(*LOG_VAR_RANGE))


def _export_graph(model: torch.nn.Module, input_px: int, path: Path, sigma: bool = False) -> None:
    """Write ``model`` (wrapped in :class:`WithSigma` when ``sigma``) as ONNX to ``path``."""
    x = torch.zeros(2, 1, input_px, input_px)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(WithSigma(model) if sigma else model, (x,), str(path), dynamo=True, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME] + ([SIGMA_NAME] if sigma else []),
                          dynamic_shapes=({0: torch.export.Dim.AUTO},), external_data=False,
                          verbose=False)


def _write_metadata(path: Path, metadata: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata, sort_keys=True),
                                        "producer": "celegans-autofocus export"})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def parity_steps(model: torch.nn.Module, onnx_path: Path, input_px: int, output_scale: float,
                 seed: int = 0, sigma: bool = False) -> float:
    """Max |ORT - torch| in steps over a batch of z-scored random and smooth inputs (batch 3 and 1), all outputs."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2, 1, input_px, input_px)).astype(np.float32)
    ramp = np.linspace(-2, 2, input_px, dtype=np.float32)
    smooth = (np.sin(3 * ramp)[None, :] * np.cos(2 * ramp)[:, None])[None, None].astype(np.float32)
    batch = np.concatenate([noise, (smooth - smooth.mean()) / smooth.std()])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    model.eval()
    torch_model = WithSigma(model) if sigma else model
    names = [OUTPUT_NAME] + ([SIGMA_NAME] if sigma else [])
    for x in (batch, batch[2:3]):
        got = session.run(names, {INPUT_NAME: x})
        with torch.no_grad():
            want = torch_model(torch.from_numpy(x))
        want = [w.numpy() for w in (want if sigma else (want,))]
        for name, g, w in zip(names, got, want):
            if g.shape != (len(x), 1):
                raise ExportError(f"{onnx_path}: ONNX output {name} shape {g.shape}, expected {(len(x), 1)}")
            worst = max(worst, float(np.abs(g - w).max()) * output_scale)
    return worst


def check_onnx_path(onnx_path: Path | str, *inputs: Path | str) -> Path:
    """Return ``onnx_path`` if it is a new ``.onnx`` file to write; :class:`ExportError` if it is not.

    It must end in ``.onnx`` and be none of ``inputs`` (the checkpoint or model it is made from): a slip such as
    ``export best.pt best.pt`` would otherwise replace the checkpoint. Checked before any training starts.
    """
    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() != ".onnx":
        raise ExportError(f"{onnx_path}: the ONNX file to write must end in .onnx")
    if any(onnx_path.resolve() == Path(p).resolve() for p in inputs):
        raise ExportError(f"{onnx_path}: the ONNX file to write is the model it is made from; write elsewhere")
    return onnx_path


def export_checkpoint(checkpoint: Path | str, onnx_path: Path | str, arch: str | None = None) -> dict:
    """Export ``checkpoint`` to ``onnx_path`` (written atomically); returns metadata and parity."""
    checkpoint, onnx_path = Path(checkpoint), check_onnx_path(onnx_path, checkpoint)
    model, state, cfg = model_from_checkpoint(checkpoint, arch)
    model = model.float().cpu().eval()
    metadata = build_metadata(state, cfg)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(onnx_path) as tmp:
        try:
            _export_graph(model, cfg.input_px, tmp, sigma=cfg.uncertainty)
        except Exception as exc:  # torch.export raises many types
            raise ExportError(f"ONNX export of {checkpoint} ({cfg.arch}) failed: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        _write_metadata(tmp, metadata)
        diff = parity_steps(model, tmp, cfg.input_px, cfg.output_scale, sigma=cfg.uncertainty)
        if not diff <= PARITY_TOL_STEPS:
            raise ExportError(f"{onnx_path}: ONNX Runtime differs from torch by {diff:.3g} steps "
                              f"(> {PARITY_TOL_STEPS}); not written")
    return {"onnx": str(onnx_path), "metadata": metadata, "parity_max_abs_diff_steps": diff,
            "size_mb": onnx_path.stat().st_size / 1e6}
