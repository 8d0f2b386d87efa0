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

"""Training, export and evaluation end to end on a tiny synthetic dataset (64 px input, CPU).

The dataset: 3 plates of one physically simulated stack each (128x96 px frames, +-40 steps every
8), plus a crop stack per full stack (48 px around the worm of stack.yaml), labelled by `label`.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from celegans_autofocus.cli import main
from celegans_autofocus.core.metrics import SUMMARY_KEYS
from celegans_autofocus.core.dataset.synthetic import write_synthetic_dataset
from celegans_autofocus.core.predictor import FocusPredictor, ModelError
from crop_stacks import add_crop_stacks

TRAIN_MODULES = ("torch", "timm", "onnxscript")
TRAINING = all(importlib.util.find_spec(name) is not None for name in TRAIN_MODULES)
pytestmark = pytest.mark.skipif(not TRAINING, reason="needs the [train] extra (torch, timm, onnxscript)")

if TRAINING:  # imported only where they exist: collection never fails on a machine without torch
    import torch

    from celegans_autofocus.training.checkpoint import CheckpointError, load_weights
    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.data import DatasetError, dataset_step_um, load_samples, split_plates
    from celegans_autofocus.training.evaluate import evaluate
    from celegans_autofocus.training.export import PARITY_TOL_STEPS, ExportError, build_metadata, export_checkpoint
    from celegans_autofocus.training.datasets import ArrayImages, TrainSamples, train_loader
    from celegans_autofocus.training.loop import train_epoch, cache_images, train
    from celegans_autofocus.training.models import ArchError, create_model
    from celegans_autofocus.training.stats import paired_comparison

    torch.set_num_threads(1)  # this CPU is shared: 2 OpenMP threads thrash when other processes run

ARCH = "mobilenetv3_small_100"
CROP_PX = 48
TINY = dict(arch=ARCH, input_px=64, batch_size=8, lr=1e-3, output_scale=50.0, val_fraction=0.34, seed=0,
            device="cpu")
SUMMARY_KEYS = {"model", "kind", *SUMMARY_KEYS}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiny"
    write_synthetic_dataset(root, plates=3, stacks_per_plate=1, range_steps=40, step_every=8,
                            frame_shape=(96, 128), n_worms=1, seed=3)
    add_crop_stacks(root, CROP_PX, f"_crop{CROP_PX}")
    assert main(["label", str(root), "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory) -> dict:
    """Train a 2-epoch run, and the same run interrupted after 1 epoch and resumed to 2."""
    base = tmp_path_factory.mktemp("runs")
    full = train(dataset, TrainConfig(**TINY, epochs=2), base / "full")
    interrupted = train(dataset, TrainConfig(**TINY, epochs=1), base / "resumed")
    resumed = train(dataset, TrainConfig(**TINY, epochs=2), base / "resumed", resume=True)
    return {"full": full, "interrupted": interrupted, "resumed": resumed, "base": base}


def test_dataset_has_both_kinds_and_truth(dataset):
    samples = load_samples(dataset)
    assert {s.kind for s in samples} == {"full", "crop"}
    assert all(s.true_offset_steps == s.offset_steps for s in samples)
    train_plates, val_plates = split_plates(samples, 0.34, 0, "tiny")
    assert train_plates and val_plates and not set(train_plates) & set(val_plates)


def test_loss_falls(dataset):
    """The training step overfits 8 images: the epoch loss drops well below its start."""
    cfg = TrainConfig(**TINY, epochs=10, rotation_deg=0.0, hflip=False, vflip=False)
    images = cache_images(load_samples(dataset)[::8][:8], cfg.spec, "cache")
    torch.manual_seed(0)
    model = create_model(ARCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loader = train_loader(TrainSamples([ArrayImages(images)], cfg), cfg)
    losses = [train_epoch(model, optimizer, torch.nn.MSELoss(), loader, cfg, torch.device("cpu"), e)
              for e in range(cfg.epochs)]
    assert losses[0] > 0.05
    assert min(losses[-3:]) < 0.3 * losses[0]


def test_run_history_and_checkpoints_load_weights_only(runs):
    history = runs["full"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(math.isfinite(h["train_loss"]) and h["val_mae_steps"] >= 0 for h in history)
    assert {"val_mae_full_steps", "val_mae_crop_steps", "val_sign_accuracy"} <= set(history[-1])
    for name in ("best.pt", "last.pt"):
        state = torch.load(Path(runs["full"]["out"]) / name, weights_only=True)
        assert state["config"]["arch"] == ARCH and isinstance(state["model"], dict)
    split = json.loads((Path(runs["full"]["out"]) / "split.json").read_text())
    assert not set(split["train_plates"]) & set(split["val_plates"])


def test_resume_continues_where_it_stopped(runs):
    """Epoch 1 comes from the checkpoint; epoch 2 continues its optimizer and LR schedule."""
    resumed = runs["resumed"]["history"]
    assert [h["epoch"] for h in resumed] == [1, 2]
    assert resumed[0] == runs["interrupted"]["history"][0]
    full_state = torch.load(Path(runs["full"]["last"]), weights_only=True)
    resumed_state = torch.load(Path(runs["resumed"]["last"]), weights_only=True)
    steps = [s["step"] for s in resumed_state["optimizer"]["state"].values()]
    assert steps and all(float(s) == float(next(iter(full_state["optimizer"]["state"].values()))["step"])
                         for s in steps)
    assert resumed_state["scheduler"]["last_epoch"] == full_state["scheduler"]["last_epoch"] == 2
    assert [h["lr"] for h in resumed] == [h["lr"] for h in runs["full"]["history"]]


def test_existing_run_needs_resume_and_same_arch(runs, dataset, capsys):
    out = Path(runs["full"]["out"])
    with pytest.raises(CheckpointError, match="--resume"):
        train(dataset, TrainConfig(**TINY, epochs=2), out)
    rc = main(["train", str(dataset), "--out", str(out), "--resume", "--arch", "resnet18", "--input-px", "64",
               "--epochs", "3", "--val-fraction", "0.34", "--output-scale", "50"])
    assert rc == 1
    assert "arch='mobilenetv3_small_100'" in capsys.readouterr().err


def test_export_parity_metadata_and_predictor(runs, dataset, tmp_path, capsys):
    best = Path(runs["full"]["best"])
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(best), str(onnx_path)]) == 0
    assert "parity vs torch" in capsys.readouterr().out
    result = export_checkpoint(best, tmp_path / "again.onnx")
    assert result["parity_max_abs_diff_steps"] <= min(PARITY_TOL_STEPS, 1e-3)  # a small model agrees far closer
    predictor = FocusPredictor(onnx_path, providers=["CPUExecutionProvider"])
    meta = predictor.metadata
    assert meta["arch"] == ARCH and meta["input_view"] == "mixed" and meta["output_scale"] == 50.0
    best_epoch = torch.load(best, weights_only=True)["epoch"]
    assert meta["preprocess"]["input_px"] == 64 and meta["epochs"] == best_epoch and meta["step_um"] == 5.0
    assert meta["val_mae_steps"] == pytest.approx(runs["full"]["best_val_mae_steps"], abs=1e-3)
    records = evaluate([best, onnx_path], dataset, max_images=6)["records"]
    torch_steps = [r[f"pred_{best.name}"] for r in records]
    onnx_steps = [r[f"pred_{onnx_path.name}"] for r in records]
    assert np.allclose(onnx_steps, torch_steps, atol=PARITY_TOL_STEPS)
    assert len(set(np.round(onnx_steps, 3))) > 1


def test_evaluate_tables_paired_test_and_files(runs, dataset, tmp_path, capsys):
    a = Path(runs["full"]["best"])
    b = Path(runs["base"]) / "resumed" / "last.pt"
    b_copy = tmp_path / "other.pt"
    b_copy.write_bytes(b.read_bytes())
    out = tmp_path / "eval"
    rc = main(["evaluate", str(a), str(b_copy), "--dataset", str(dataset), "--fov-px", "32", "48", "64",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Wilcoxon" in text and "field of view" in text
    result = json.loads((out / "evaluation.json").read_text())
    rows = result["table"]
    assert {(r["model"], r["kind"]) for r in rows} == {(m, k) for m in ("best.pt", "other.pt")
                                                       for k in ("full", "crop", "all")}
    assert all(set(r) == SUMMARY_KEYS for r in rows)
    assert [r["fov_px"] for r in result["fov_table"]] == ["32", "48", "64", "full"]
    full_row = next(r for r in rows if r["model"] == "best.pt" and r["kind"] == "full")
    assert result["fov_table"][-1]["mae_steps"] == pytest.approx(full_row["mae_steps"])
    paired = result["paired"]["all"]
    assert paired["n"] == full_row["n"] * 2 and 0 <= paired["wilcoxon_p"] <= 1
    with (out / "predictions.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == paired["n"]
    assert (out / "pred_vs_true.png").stat().st_size > 1000


def test_synthetic_on_the_fly_training(dataset, tmp_path):
    cfg = TrainConfig(**{**TINY, "val_fraction": 1.0, "input_px": 32}, epochs=1, synthetic_train=16,
                      synthetic_offsets_per_view=8, synthetic_range_steps=60.0, synthetic_fov_px=[400])
    summary = train(dataset, cfg, tmp_path / "synth")
    assert summary["train_images"] == 0 and len(summary["val_plates"]) == 3
    state = torch.load(tmp_path / "synth" / "last.pt", weights_only=True)
    assert state["input_view"] == "mixed" and len(state["train_data_hash"]) == 16


def test_step_um_comes_from_the_data(dataset, tmp_path):
    """A dataset sampled every 2.5 um: the checkpoint and the exported metadata say 2.5, not the sensor default."""
    root = tmp_path / "fine"
    shutil.copytree(dataset, root)
    for path in (root / "plates").glob("*/*/stack.yaml"):
        meta = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**meta, "step_um": 2.5}))
    samples = load_samples(root)
    assert dataset_step_um(samples, "fine") == 2.5
    summary = train(root, TrainConfig(**TINY, epochs=1, max_val_samples=4), tmp_path / "run")
    state = torch.load(summary["last"], weights_only=True)
    assert state["step_um"] == 2.5
    assert build_metadata(state, TrainConfig(**TINY))["step_um"] == 2.5
    mixed = samples[:1] + list(load_samples(dataset))
    with pytest.raises(DatasetError, match="different step_um"):
        dataset_step_um(mixed, "mixed")


def test_paired_comparison_by_hand():
    rng = np.random.default_rng(0)
    b = rng.exponential(10.0, 200)
    better = paired_comparison(b * 0.5, b)
    assert better["wilcoxon_p"] < 1e-6 and better["median_diff_steps"] < 0 and "A has lower" in better["verdict"]
    same = paired_comparison(b + rng.normal(0, 1, 200), b)
    assert same["wilcoxon_p"] > 1e-3 and math.isfinite(same["shapiro_p"])


# ------------------------------------------------------------------------------------------ bad input

def _train_cli(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(dataset), "--out", str(out), "--arch", ARCH, "--input-px", "64", "--epochs", "1", *extra]


def test_empty_dataset_is_a_clear_error(tmp_path, capsys):
    root = tmp_path / "empty"
    (root / "plates").mkdir(parents=True)
    (root / "labels.csv").write_text("plate,stack,file,z_index,best_index,offset_steps,measure,measure_value,"
                                     "kind,fov_px,ambiguous\n")
    assert main(_train_cli(root, tmp_path / "out")) == 1
    assert "labels.csv" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="empty"):
        load_samples(root)


def test_unsplittable_dataset_is_a_clear_error(dataset, tmp_path, capsys):
    root = tmp_path / "one_plate"
    (root / "plates").mkdir(parents=True)
    src = dataset / "plates" / "plate_000"
    (root / "plates" / "plate_000").symlink_to(src, target_is_directory=True)
    with (dataset / "labels.csv").open() as fh:
        lines = [line for line in fh if line.startswith(("plate,", "plate_000,"))]
    (root / "labels.csv").write_text("".join(lines))
    assert main(_train_cli(root, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "1 plate(s)" in err and "need >= 2" in err


def test_unknown_arch_is_a_clear_error(dataset, tmp_path, capsys):
    assert main(_train_cli(dataset, tmp_path / "out", "--arch", "resnet_does_not_exist")) == 1
    assert "unknown architecture 'resnet_does_not_exist'" in capsys.readouterr().err
    with pytest.raises(ArchError):
        create_model("")


def test_checkpoint_from_another_arch_is_a_clear_error(runs, tmp_path, capsys):
    best = Path(runs["full"]["best"])
    assert main(["export", str(best), str(tmp_path / "x.onnx"), "--arch", "resnet18"]) == 1
    assert "is a 'mobilenetv3_small_100' model, not 'resnet18'" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    state = torch.load(best, weights_only=True)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_weights(create_model("resnet18"), state["model"], best, "resnet18")
    forged = dict(state, config={**state["config"], "arch": "resnet18"})
    torch.save(forged, tmp_path / "forged.pt")
    assert main(["export", str(tmp_path / "forged.pt"), str(tmp_path / "y.onnx")]) == 1
    assert "do not fit a 'resnet18' model" in capsys.readouterr().err


def test_onnx_without_metadata_is_a_clear_error(dataset, tmp_path, capsys):
    from onnx_models import no_metadata_model

    path = no_metadata_model(tmp_path / "plain.onnx", input_px=32)
    assert main(["evaluate", str(path), "--dataset", str(dataset), "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "metadata" in err
    with pytest.raises(ModelError):
        evaluate([path], dataset)


def test_an_export_that_would_replace_its_input_is_refused_before_anything_runs(runs, dataset, tmp_path, capsys):
    """`export best.pt best.pt`, `train --export RUN/best.pt` or onto its --init model: refused, nothing replaced."""
    best = Path(runs["full"]["best"])
    kept = best.read_bytes()
    assert main(["export", str(best), str(best)]) == 1
    assert f"{best}: the ONNX file to write must end in .onnx" in capsys.readouterr().err
    with pytest.raises(ExportError, match="must end in .onnx"):
        export_checkpoint(best, tmp_path / "model.pt")
    out = tmp_path / "out"
    assert main(_train_cli(dataset, out, "--export", str(out / "best.pt"))) == 1
    assert "must end in .onnx" in capsys.readouterr().err
    assert not out.exists()  # refused before training started, not after it
    init = tmp_path / "init.onnx"
    init.write_bytes(b"the model training starts from")
    assert main(_train_cli(dataset, out, "--init", str(init), "--export", str(init))) == 1
    assert "is the model it is made from" in capsys.readouterr().err
    assert init.read_bytes() == b"the model training starts from" and not out.exists()
    assert best.read_bytes() == kept
