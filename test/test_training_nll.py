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

"""The Gaussian NLL head: its loss, training, export (second ONNX output named in the metadata) and serving."""
from __future__ import annotations

import importlib.util
import math
import re

import numpy as np
import pytest

TRAINING = all(importlib.util.find_spec(name) is not None for name in ("torch", "timm", "onnxscript"))
pytestmark = pytest.mark.skipif(not TRAINING, reason="needs the [train] extra (torch, timm, onnxscript)")

if TRAINING:
    import torch

    from celegans_autofocus.core.predictor import FocusPredictor
    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.export import PARITY_TOL_STEPS, SIGMA_NAME, export_checkpoint
    from celegans_autofocus.training.loop import VAR_GRAD_SCALE, loss_fn, train
    from celegans_autofocus.training.models import create_model

    torch.set_num_threads(1)

NLL = dict(arch="plain7", input_px=32, batch_size=8, lr=1e-3, epochs=1, val_fraction=1.0, device="cpu", seed=1,
           synthetic_train=16, synthetic_offsets_per_view=4, synthetic_fov_px=[300], synthetic_crop_fraction=1.0,
           synthetic_val=8, synthetic_val_fov_px=[300], loss="gaussian_nll")


def test_gaussian_nll_by_hand():
    out = torch.tensor([[0.5, math.log(4.0)], [-1.0, 0.0]])
    y = torch.tensor([[1.5], [-1.0]])
    want = np.mean([0.5 * (math.log(4.0) + 1.0 / 4.0), 0.5 * (0.0 + 0.0)])
    assert loss_fn(TrainConfig(loss="gaussian_nll"))(out, y).item() == pytest.approx(want, rel=1e-6)
    beta = loss_fn(TrainConfig(loss="gaussian_nll", nll_beta=0.5))(out, y).item()
    assert beta == pytest.approx(np.mean([2.0 * 0.5 * (math.log(4.0) + 0.25), 0.0]), rel=1e-6)
    assert create_model("plain7", outputs=2)(torch.zeros(2, 1, 32, 32)).shape == (2, 2)


def test_huber_nll_trains_the_mean_by_huber_alone():
    out = torch.tensor([[0.5, math.log(4.0)], [-1.0, 0.0]], requires_grad=True)
    y = torch.tensor([[1.5], [-1.02]])
    loss = loss_fn(TrainConfig(loss="huber_nll"))(out, y)
    huber = np.mean([0.1 * (1.0 - 0.05), 0.5 * 0.02 ** 2])  # linear beyond HUBER_DELTA = 0.1, quadratic within
    nll = np.mean([0.5 * (math.log(4.0) + 1.0 / 4.0), 0.5 * 0.02 ** 2])
    assert loss.item() == pytest.approx(huber + nll, rel=1e-5)
    loss.backward()
    # d/d mean: the Huber term's alone (the NLL would add -(y - mean) / var / N = -0.125 to the first row)
    assert out.grad[:, 0].tolist() == pytest.approx([-0.1 / 2, 0.02 / 2], rel=1e-4)
    # d/d log_var: the NLL's, scaled by VAR_GRAD_SCALE (the shared layers learn the mean alone)
    assert out.grad[0, 1].item() == pytest.approx(VAR_GRAD_SCALE * 0.5 * (1 - 1.0 / 4.0) / 2, rel=1e-5)
    assert TrainConfig(loss="huber_nll").outputs == 2


def test_nll_model_trains_exports_and_serves_its_sigma(tmp_path):
    summary = train(None, TrainConfig(**NLL), tmp_path / "run")
    entry = summary["history"][-1]
    assert 0.0 <= entry["val_within_2sigma"] <= 1.0
    result = export_checkpoint(summary["best"], tmp_path / "nll.onnx")
    meta = result["metadata"]
    assert meta["sigma_output"] == SIGMA_NAME and result["parity_max_abs_diff_steps"] <= PARITY_TOL_STEPS
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", meta["source_commit"])
    predictor = FocusPredictor(tmp_path / "nll.onnx", providers=["CPUExecutionProvider"])
    assert predictor.has_sigma
    assert [o.name for o in predictor.session.get_outputs()] == ["offset_steps", SIGMA_NAME]
    frame = np.random.default_rng(0).integers(0, 256, (90, 90), dtype=np.uint8)
    offset, sigma = predictor.predict_with_sigma(frame)
    state = torch.load(summary["best"], weights_only=True)
    model = create_model("plain7", outputs=2)
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        raw = model(torch.from_numpy(predictor.preprocess(frame)[None])).numpy()[0]
    assert offset == pytest.approx(raw[0] * 100.0, abs=1e-3)
    assert sigma == pytest.approx(math.exp(0.5 * raw[1]) * 100.0, rel=1e-4)


def test_one_output_export_has_no_sigma(tmp_path):
    summary = train(None, TrainConfig(**{**NLL, "loss": "huber"}), tmp_path / "run")
    meta = export_checkpoint(summary["best"], tmp_path / "m.onnx")["metadata"]
    assert "sigma_output" not in meta
    assert not FocusPredictor(tmp_path / "m.onnx", providers=["CPUExecutionProvider"]).has_sigma
