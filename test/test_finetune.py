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

"""Fine-tuning the bundled model: the ONNX -> torch weight import, and `finetune` end to end on a tiny dataset.

The dataset: 4 plates of one simulated stack each (128x96 px frames, +-40 steps every 8) with a 64 px crop
stack around each worm (the bundled model reads crops), labelled by `label`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from celegans_autofocus.cli import main
from celegans_autofocus.core.dataset.io import read_image
from celegans_autofocus.core.dataset.synthetic import write_synthetic_dataset
from celegans_autofocus.core.images import PreprocessSpec, preprocess
from celegans_autofocus.core.predictor import FocusPredictor, default_model_path
from crop_stacks import add_crop_stacks

TRAINING = all(importlib.util.find_spec(name) is not None for name in ("torch", "onnx", "onnxscript"))
pytestmark = pytest.mark.skipif(not TRAINING, reason="needs the [train] extra (torch, onnx, onnxscript)")

if TRAINING:  # imported only where they exist: collection never fails on a machine without torch
    import torch

    from celegans_autofocus.training.checkpoint import CheckpointError
    from celegans_autofocus.training.data import DatasetError
    from celegans_autofocus.training.finetune import finetune
    from celegans_autofocus.training.finetune_config import FinetuneConfig
    from celegans_autofocus.training.onnx_import import OnnxImportError, model_from_onnx

    torch.set_num_threads(1)  # this CPU is shared: 2 OpenMP threads thrash when other processes run

CROP_PX = 64
PARITY_STEPS = 1e-3


def _write(root: Path, plates: int, crops: bool) -> Path:
    write_synthetic_dataset(root, plates=plates, stacks_per_plate=1, range_steps=40, step_every=8,
                            frame_shape=(96, 128), n_worms=1, seed=5)
    if crops:
        add_crop_stacks(root, CROP_PX, f"__crop{CROP_PX}_w0")
    assert main(["label", str(root), "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("data") / "tiny", plates=4, crops=True)


def test_onnx_import_matches_onnx_runtime(dataset):
    """The bundled model's initializers in the torch plain7 compute what ONNX Runtime computes, image by image."""
    import onnxruntime as ort

    path = default_model_path()
    model, meta = model_from_onnx(path)
    assert meta["arch"] == "plain7" and meta["input_view"] == "crop"
    spec = PreprocessSpec.from_dict(meta["preprocess"])
    crops = sorted((dataset / "plates").glob(f"*/*__crop{CROP_PX}_w0/z_*.png"))[:6]
    real_looking = np.stack([preprocess(read_image(p), spec) for p in crops])
    noise = np.random.default_rng(0).standard_normal((4, spec.input_px, spec.input_px)).astype(np.float32)
    x = np.concatenate([real_looking, noise])[:, None].astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"image": x})[0][:, 0] * meta["output_scale"]
    with torch.no_grad():
        got = model(torch.from_numpy(x))[:, 0].numpy() * meta["output_scale"]
    assert np.abs(got - want).max() <= PARITY_STEPS
    assert np.ptp(want) > 1.0  # the outputs differ between images: the parity is not of constants


def test_onnx_import_refuses_other_graphs(tmp_path):
    from onnx_models import pixel_model

    with pytest.raises(OnnxImportError, match="only plain7"):
        model_from_onnx(pixel_model(tmp_path / "m.onnx", a=1.0, b=0.0, row=0, col=0))
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(OnnxImportError, match="junk.onnx"):
        model_from_onnx(tmp_path / "junk.onnx")


def test_finetune_end_to_end_exports_a_model_the_predictor_serves(dataset, tmp_path, capsys):
    out, onnx_path = tmp_path / "run", tmp_path / "ft.onnx"
    assert main(["finetune", str(dataset), "--epochs", "2", "--batch-size", "8", "--val-fraction", "0.5",
                 "--out", str(out), "--export", str(onnx_path), "--json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    parent = default_model_path()
    assert f"before = {parent.name}" in printed and "ft.onnx" in printed and "MAE" in printed

    summary = json.loads((tmp_path / "s.json").read_text())
    assert not set(summary["train_plates"]) & set(summary["val_plates"])
    assert len(summary["train_plates"]) == 2 and len(summary["val_plates"]) == 2
    rows = summary["held_out"]["rows"]
    assert {r["kind"] for r in rows} == {"crop"} and len(rows) == 2 and all(r["n"] == 22 for r in rows)
    assert summary["held_out"]["paired"]["crop"]["n"] == 22

    predictor = FocusPredictor(onnx_path, providers=["CPUExecutionProvider"])
    meta = predictor.metadata
    assert meta["arch"] == "plain7" and meta["input_view"] == "crop" and predictor.spec.input_px == 96
    assert meta["epochs"] == 2 and meta["step_um"] == 5.0 and meta["output_scale"] == 100.0
    assert meta["parent_model"]["file"] == parent.name
    assert meta["parent_model"]["sha256"] == hashlib.sha256(parent.read_bytes()).hexdigest()[:16]
    assert len(meta["train_data_hash"]) == 16 and meta["train_data_hash"] != meta["parent_model"]["train_data_hash"]
    assert meta["val_mae_steps"] == pytest.approx(summary["held_out_mae_steps_torch"], abs=1e-3)
    # BatchNorm stayed frozen: the import's identity statistics (the export folded the real ones) are untouched
    state, imported = torch.load(out / "finetuned.pt", weights_only=True)["model"], model_from_onnx(parent)[0]
    stats = [k for k in state if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) == 3 * 7 and all(torch.equal(state[k], imported.state_dict()[k]) for k in stats)

    # the weights moved: the new model answers differently from the bundled one on the same crops
    crops = [read_image(p) for p in sorted((dataset / "plates").glob(f"*/*__crop{CROP_PX}_w0/z_*.png"))[:8]]
    before = FocusPredictor(parent, providers=["CPUExecutionProvider"]).predict_batch(crops)
    after = predictor.predict_batch(crops)
    assert np.isfinite(after).all() and np.abs(after - before).max() > 0.1


def test_a_crop_model_without_crop_stacks_is_a_clear_error(tmp_path, capsys):
    root = _write(tmp_path / "full_only", plates=2, crops=False)
    assert main(["finetune", str(root), "--epochs", "1", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "no crop images" in err and f"celegans-autofocus crop {root} --fov 500" in err
    assert not (tmp_path / "run" / "finetuned.onnx").exists()


def test_bad_settings_and_too_few_images_are_clear_errors(dataset, tmp_path):
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        finetune(dataset, default_model_path(), FinetuneConfig(epochs=0), tmp_path / "a")
    with pytest.raises(DatasetError, match="fewer than one batch"):
        finetune(dataset, default_model_path(), FinetuneConfig(batch_size=512, val_fraction=0.5), tmp_path / "b")
    parent = tmp_path / "parent.onnx"
    parent.write_bytes(default_model_path().read_bytes())
    assert main(["finetune", str(dataset), "--model", str(parent), "--export", str(parent),
                 "--out", str(tmp_path / "c")]) == 1
    assert parent.read_bytes() == default_model_path().read_bytes()


def test_a_checkpoint_is_a_parent_too(dataset, tmp_path):
    """A fine-tuned checkpoint (.pt) fine-tunes again; its metadata then names that checkpoint as the parent."""
    cfg = FinetuneConfig(epochs=1, batch_size=8, val_fraction=0.5)
    first = finetune(dataset, default_model_path(), cfg, tmp_path / "first")
    second = finetune(dataset, first["checkpoint"], cfg, tmp_path / "second")
    state = torch.load(second["checkpoint"], weights_only=True)
    assert state["parent_model"]["file"] == "finetuned.pt" and state["input_view"] == "crop"
    assert second["val_plates"] == first["val_plates"] and second["train_images"] == first["train_images"]
    with pytest.raises(CheckpointError, match="choose a new --out"):
        finetune(dataset, default_model_path(), cfg, tmp_path / "first")


def test_a_contrast_parent_is_fine_tuned_and_exported_on_contrast_inputs(dataset, tmp_path):
    """The parent's input normalisation is the fine-tuned model's: its checkpoint and export say contrast."""
    import json

    import onnx

    from celegans_autofocus.core.predictor import METADATA_KEY
    from celegans_autofocus.training.checkpoint import model_from_checkpoint
    from celegans_autofocus.training.export import export_checkpoint

    parent = onnx.load(default_model_path())
    entry = next(p for p in parent.metadata_props if p.key == METADATA_KEY)
    meta = json.loads(entry.value)
    meta["preprocess"] = PreprocessSpec(input_px=meta["preprocess"]["input_px"], normalize="contrast").to_dict()
    entry.value = json.dumps(meta)
    onnx.save(parent, tmp_path / "contrast.onnx")
    out = finetune(dataset, tmp_path / "contrast.onnx", FinetuneConfig(epochs=1, batch_size=8, val_fraction=0.5),
                   tmp_path / "ft")
    spec = PreprocessSpec(input_px=meta["preprocess"]["input_px"], normalize="contrast")
    assert model_from_checkpoint(out["checkpoint"])[2].spec == spec
    export_checkpoint(out["checkpoint"], tmp_path / "ft.onnx")
    assert FocusPredictor(tmp_path / "ft.onnx", providers=["CPUExecutionProvider"]).spec == spec


@pytest.mark.parametrize("arch", ["plain7", "resnet18_half"])
def test_onnx_import_of_a_model_with_sigma_gives_both_outputs(tmp_path, arch):
    """An NLL model (offset and offset_sigma outputs) comes back as its torch model with its two raw outputs."""
    import onnxruntime as ort

    from celegans_autofocus.training.checkpoint import FORMAT, save_checkpoint
    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.export import WithSigma, export_checkpoint
    from celegans_autofocus.training.models import create_model

    torch.manual_seed(0)
    cfg = TrainConfig(arch=arch, input_px=32, loss="gaussian_nll", output_scale=100.0)
    trained = create_model(arch, outputs=2)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))  # outputs that differ between images
        for name, b in trained.named_buffers():
            if name.endswith("running_mean"):
                b.add_(0.1 * torch.randn_like(b))  # statistics the export must fold
    save_checkpoint({"format": FORMAT, "model": trained.state_dict(), "config": cfg.to_dict(), "epoch": 1,
                     "history": [], "best_val_mae_steps": None, "step_um": 5.0}, tmp_path / "nll.pt")
    export_checkpoint(tmp_path / "nll.pt", tmp_path / "nll.onnx")
    model, meta = model_from_onnx(tmp_path / "nll.onnx")
    assert meta["sigma_output"] == "offset_sigma" and meta["arch"] == arch
    x = np.random.default_rng(1).standard_normal((5, 1, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(tmp_path / "nll.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    with torch.no_grad():
        got = [t.numpy() for t in WithSigma(model)(torch.from_numpy(x))]
    for g, w in zip(got, want):
        assert np.abs(g - w).max() * meta["output_scale"] <= PARITY_STEPS
    assert np.ptp(want[1]) > 0  # the sigmas differ between images: not a parity of constants


@pytest.mark.parametrize("parent_loss, finetune_loss, beta",
                         [("gaussian_nll", "gaussian_nll", 0.5), ("huber_nll", "huber_nll", 0.0)])
def test_a_parent_with_sigma_is_fine_tuned_with_its_nll_loss_and_keeps_its_sigma(
        dataset, tmp_path, parent_loss, finetune_loss, beta):
    """An uncertainty model fine-tunes on beta-NLL, or on huber_nll if that trained it (the export says which).

    The result still serves a sigma; a model exported before the metadata named the loss gets beta-NLL, a model
    without a sigma the Huber loss.
    """
    from celegans_autofocus.training.checkpoint import FORMAT, save_checkpoint
    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.export import export_checkpoint
    from celegans_autofocus.training.parent import load_parent
    from celegans_autofocus.training.models import create_model

    torch.manual_seed(0)
    cfg = TrainConfig(arch="plain7", input_px=32, loss=parent_loss, nll_beta=0.5, output_scale=100.0)
    trained = create_model("plain7", outputs=2)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))  # trained-like weights (a fresh model's zero biases export folded away)
    save_checkpoint({"format": FORMAT, "model": trained.state_dict(), "config": cfg.to_dict(),
                     "epoch": 1, "history": [], "best_val_mae_steps": None, "step_um": 5.0, "input_view": "crop"},
                    tmp_path / "nll.pt")
    assert export_checkpoint(tmp_path / "nll.pt", tmp_path / "nll.onnx")["metadata"]["loss"] == parent_loss
    summary = finetune(dataset, tmp_path / "nll.onnx", FinetuneConfig(epochs=1, batch_size=8, val_fraction=0.5),
                       tmp_path / "ft")
    state = torch.load(summary["checkpoint"], weights_only=True)
    assert state["config"]["loss"] == finetune_loss and state["config"]["nll_beta"] == beta
    meta = export_checkpoint(summary["checkpoint"], tmp_path / "ft.onnx")["metadata"]
    assert meta["sigma_output"] == "offset_sigma" and meta["loss"] == finetune_loss
    offset, sigma = FocusPredictor(tmp_path / "ft.onnx").predict_with_sigma(np.zeros((64, 64), np.uint8) + 100)
    assert np.isfinite(offset) and sigma is not None and sigma > 0
    parent = load_parent(tmp_path / "nll.onnx")
    assert parent.loss == parent_loss  # read from the metadata
    assert replace(parent, loss="unknown").finetune_loss == "gaussian_nll"  # an export that does not name its loss
    assert replace(parent, sigma=False).finetune_loss == "huber"  # one output: Huber


def test_flagged_stacks_are_left_out_of_training_unless_included(dataset, tmp_path):
    """A stack the labeller flagged (ambiguous=1) is not trained on by default: its label is not trusted."""
    import csv
    import shutil

    data = shutil.copytree(dataset, tmp_path / "data")
    with (data / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))

    def flag(key) -> None:
        for r in rows:
            r["ambiguous"] = "1" if (r["plate"], r["stack"]) == key else "0"
        with (data / "labels.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    cfg = FinetuneConfig(epochs=1, batch_size=8, val_fraction=0.5, target="labels")
    flag(None)
    plain = finetune(data, default_model_path(), cfg, tmp_path / "plain")
    assert plain["flagged_left_out"] == []
    key = next((r["plate"], r["stack"]) for r in rows if r["plate"] == plain["train_plates"][0] and r["kind"] == "crop")
    flag(key)
    left = finetune(data, default_model_path(), cfg, tmp_path / "left")
    assert left["flagged_left_out"] == ["/".join(key)]
    assert left["train_images"] == plain["train_images"] - sum((r["plate"], r["stack"]) == key for r in rows)
    kept = finetune(data, default_model_path(), FinetuneConfig(**{**cfg.__dict__, "include_flagged": True}),
                    tmp_path / "kept")
    assert kept["flagged_left_out"] == [] and kept["train_images"] == plain["train_images"]


def test_outputs_that_would_replace_an_input_are_refused_before_training(dataset, tmp_path, capsys):
    """`--json DATASET/labels.csv` or `--export` onto a checkpoint: a clear error before training, nothing replaced."""
    labels = dataset / "labels.csv"
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"a torch checkpoint")
    kept = labels.read_bytes()
    out = tmp_path / "run"
    assert main(["finetune", str(dataset), "--epochs", "1", "--out", str(out), "--json", str(labels)]) == 1
    assert f"--json {labels}: the summary file to write must end in .json" in capsys.readouterr().err
    assert main(["finetune", str(dataset), "--epochs", "1", "--out", str(out), "--export", str(checkpoint)]) == 1
    assert f"{checkpoint}: the ONNX file to write must end in .onnx" in capsys.readouterr().err
    assert labels.read_bytes() == kept and checkpoint.read_bytes() == b"a torch checkpoint"
    assert not out.exists()  # refused before training started, not after it
