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

"""The torch Dataset/DataLoader pipeline: seeded per (seed, epoch, index), so workers and resumes change nothing.

A synthetic-only run (no dataset: the rendered pool trains, held-out renders validate), plain7 at 32 px.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TRAINING = all(importlib.util.find_spec(name) is not None for name in ("torch", "timm"))
pytestmark = pytest.mark.skipif(not TRAINING, reason="needs the [train] extra (torch, timm)")

if TRAINING:
    import torch

    from celegans_autofocus.core import optics
    from celegans_autofocus.core.images import PreprocessSpec
    from celegans_autofocus.training.checkpoint import CheckpointError
    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.datasets import ArrayImages, TrainSamples, train_loader
    from celegans_autofocus.training.loop import train
    from celegans_autofocus.training.synthetic import SyntheticPool, SyntheticValidation

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SYNTH = dict(arch="plain7", input_px=32, batch_size=8, lr=1e-3, epochs=2, val_fraction=1.0, device="cpu", seed=4,
             synthetic_train=24, synthetic_offsets_per_view=4, synthetic_refresh=0.5, synthetic_fov_px=[300],
             synthetic_crop_fraction=0.5, synthetic_crop_jitter=0.08, synthetic_val=8,
             synthetic_val_fov_px=[300], rot90=True, schedule="onecycle", optimizer="adamw", weight_decay=1e-4)


def test_resume_with_workers_repeats_the_uninterrupted_run(tmp_path, monkeypatch):
    """A run interrupted in epoch 2 and resumed (with 2 DataLoader workers) ends where the unbroken run ends."""
    import celegans_autofocus.training.loop as loop

    full = train(None, TrainConfig(**SYNTH), tmp_path / "full")
    original, calls = loop.train_epoch, []

    def interrupt_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", interrupt_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(None, TrainConfig(**SYNTH), tmp_path / "piece")
    monkeypatch.setattr(loop, "train_epoch", original)
    assert torch.load(tmp_path / "piece" / "last.pt", weights_only=True)["epoch"] == 1
    import celegans_autofocus.training.synthetic as synthetic

    rendered = []

    def counting(recipe, spec, seeds, workers, desc):
        rendered.extend(seeds)
        return render_views(recipe, spec, seeds, workers, desc)

    render_views = synthetic.render_views
    monkeypatch.setattr(synthetic, "render_views", counting)
    resumed = train(None, TrainConfig(**{**SYNTH, "workers": 2}), tmp_path / "piece", resume=True)
    # the pool of epoch 2 was saved before the interruption: only the 2 validation views are rendered again
    assert len(rendered) == 2 and all(seed[-1] == synthetic.VAL_TAG for seed in rendered)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for a, b in zip(full["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_mae_steps"] == pytest.approx(b["val_mae_steps"], rel=1e-6)
        assert a["lr"] == b["lr"]
    w_full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    w_resumed = torch.load(tmp_path / "piece" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(w_full[k].float(), w_resumed[k].float(), atol=1e-6) for k in w_full)


def test_pool_refresh_is_a_function_of_seed_and_epoch(tmp_path):
    """Generations follow (seed, epoch) only; re-rendering a view gives the same pixels; validation differs."""
    cfg = TrainConfig(**SYNTH)
    spec = cfg.spec
    a, b = SyntheticPool(cfg, spec), SyntheticPool(cfg, spec)
    a.update(0)
    a.update(1)
    a.update(2)
    b.update(2)  # a resumed process fills the pool of epoch 2 at once
    assert np.array_equal(a.images, b.images) and np.array_equal(a.offsets_steps, b.offsets_steps)
    gen = a.generations(2)
    assert gen.shape == (a.n_views,) and set(gen.tolist()) <= {0, 1, 2} and len(set(gen.tolist())) > 1
    assert np.all(np.abs(a.offsets_steps) <= cfg.synthetic_range_steps)
    assert {"crop", "full"} == set(a.kinds)
    path = tmp_path / "pool.npz"
    a.save(path)
    c = SyntheticPool(cfg, spec)
    assert c.load(path) and np.array_equal(c.images, a.images) and c.kinds == a.kinds and c.update(2) == 0
    assert not SyntheticPool(TrainConfig(**{**SYNTH, "seed": 5}), spec).load(path)  # another recipe's pool
    assert not SyntheticPool(cfg, spec).load(path.with_name("missing.npz"))
    val = SyntheticValidation(cfg, spec)
    assert len(val) == cfg.synthetic_val and not np.isin(val.offsets_steps, a.offsets_steps).any()


def test_a_fresh_run_takes_a_pool_of_its_recipe_from_out(tmp_path, monkeypatch):
    """Runs of several architectures share one render: a matching pool.npz in --out is used, another is not."""
    import shutil

    import celegans_autofocus.training.synthetic as synthetic

    cfg = TrainConfig(**{**SYNTH, "epochs": 1, "synthetic_refresh": 0.0})
    train(None, cfg, tmp_path / "first")
    rendered = []
    render_views = synthetic.render_views

    def counting(recipe, spec, seeds, workers, desc):
        rendered.extend(seeds)
        return render_views(recipe, spec, seeds, workers, desc)

    monkeypatch.setattr(synthetic, "render_views", counting)
    for name, changes in (("other_arch", {"arch": "mobilenetv3_small_100"}), ("other_seed", {"seed": 5})):
        (tmp_path / name).mkdir()
        shutil.copy(tmp_path / "first" / "pool.npz", tmp_path / name / "pool.npz")
        rendered.clear()
        train(None, TrainConfig(**{**cfg.to_dict(), **changes}), tmp_path / name)
        train_views = [s for s in rendered if s[-1] == synthetic.TRAIN_TAG]
        # the same recipe (only the arch differs): nothing rendered but validation; another seed: all its views
        all_views = cfg.synthetic_train // cfg.synthetic_offsets_per_view
        assert len(train_views) == (0 if name == "other_arch" else all_views)
    first = np.load(tmp_path / "first" / "pool.npz")
    assert np.array_equal(np.load(tmp_path / "other_arch" / "pool.npz")["images"], first["images"])
    assert not np.array_equal(np.load(tmp_path / "other_seed" / "pool.npz")["images"], first["images"])


def test_a_contrast_run_renders_its_own_pool_and_exports_its_normalisation(tmp_path):
    """--normalize contrast: a z-scored pool in --out is not taken, and the export names the normalisation."""
    import shutil

    from celegans_autofocus.core.predictor import FocusPredictor
    from celegans_autofocus.training.config import ConfigError
    from celegans_autofocus.training.export import export_checkpoint

    cfg = TrainConfig(**{**SYNTH, "epochs": 1, "synthetic_refresh": 0.0})
    train(None, cfg, tmp_path / "zscore")
    (tmp_path / "contrast").mkdir()
    shutil.copy(tmp_path / "zscore" / "pool.npz", tmp_path / "contrast" / "pool.npz")
    run = train(None, TrainConfig(**{**cfg.to_dict(), "normalize": "contrast"}), tmp_path / "contrast")
    zscored, contrast = (np.load(tmp_path / name / "pool.npz")["images"] for name in ("zscore", "contrast"))
    assert zscored.shape == contrast.shape and not np.allclose(zscored, contrast, atol=0.1)
    export_checkpoint(run["last"], tmp_path / "contrast.onnx")
    exported = FocusPredictor(tmp_path / "contrast.onnx", providers=["CPUExecutionProvider"])
    assert exported.spec == PreprocessSpec(input_px=32, normalize="contrast")
    with pytest.raises(ConfigError, match="normalize must be one of"):
        TrainConfig.from_dict({**SYNTH, "normalize": "minmax"})


def test_samples_are_the_same_in_any_worker_and_order():
    """Sample i of epoch e is augmented from (seed, e, i): the loader's batches do not depend on workers."""
    cfg = TrainConfig(**{**SYNTH, "synthetic_train": 0})
    rng = np.random.default_rng(0)
    from celegans_autofocus.training.data import ImageSet

    images = ImageSet(rng.standard_normal((20, 32, 32)).astype(np.float16), rng.uniform(-100, 100, 20), ["crop"] * 20)
    samples = TrainSamples([ArrayImages(images)], cfg)
    batches = {}
    for workers in (0, 2):
        loader = train_loader(samples, TrainConfig(**{**SYNTH, "workers": workers}))
        loader.sampler.set_epoch(3)
        samples.set_epoch(3)
        batches[workers] = [(x.clone(), y.clone()) for x, y in loader]
    assert len(batches[0]) == 3  # 20 samples, batch 8: 8, 8, 4
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    samples.set_epoch(4)
    x_a, _ = samples[5]
    samples.set_epoch(3)
    x_b, _ = samples[5]
    assert not torch.equal(x_a, x_b)  # another epoch, another augmentation of the same image


def test_resume_refuses_another_recipe(tmp_path):
    cfg = TrainConfig(**{**SYNTH, "epochs": 1})
    train(None, cfg, tmp_path / "run")
    with pytest.raises(CheckpointError, match="lr=0.001"):
        train(None, TrainConfig(**{**SYNTH, "epochs": 1, "lr": 2e-3}), tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="onecycle schedule"):
        train(None, TrainConfig(**{**SYNTH, "epochs": 3}), tmp_path / "run", resume=True)


def test_resume_ignores_step_schedule_settings_only_where_no_step_schedule_reads_them(tmp_path):
    """lr_gamma / lr_step_epochs (inherited from a step-schedule base, say): only a step schedule reads them."""
    from celegans_autofocus.training.loop import _check_resume

    train(None, TrainConfig(**{**SYNTH, "epochs": 1}), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    _check_resume(state, TrainConfig(**{**SYNTH, "epochs": 1, "lr_gamma": 0.5, "lr_step_epochs": 9}), tmp_path)
    with pytest.raises(CheckpointError, match="lr_gamma=0.85"):  # a step schedule reads them: another recipe
        _check_resume(state, TrainConfig(**{**SYNTH, "epochs": 1, "schedule": "step", "lr_gamma": 0.5}), tmp_path)


def model_stages() -> list[str]:
    """Return `make model`'s stages, as the Makefile lists them (MODEL_STAGES)."""
    line = next(ln for ln in (REPO / "Makefile").read_text().splitlines() if ln.startswith("MODEL_STAGES :="))
    return line.split(":=")[1].split()


def test_the_shipped_five_stage_recipe_runs_from_the_command_line(tmp_path):
    """`make model`'s stages (nll_model -> ... -> mottled_look_cont_model, the bundled model), cut to 1 epoch each.

    Each stage starts from the weights its config's ``init`` names (the previous stage's checkpoint, or its export
    as `make model` writes it to runs/STAGE.onnx); the last stage's export is the bundled model's kind.
    """
    from celegans_autofocus.cli import main, read_config
    from celegans_autofocus.training.export import export_checkpoint

    cut = {"epochs": 1, "synthetic_train": 20, "synthetic_val": 10}
    flags = ["--epochs", "1", "--synthetic-train", "20", "--synthetic-val", "10"]
    stages = model_stages()
    assert stages[0] == "nll_model" and stages[-1] == "mottled_look_cont_model" and len(stages) == 5
    written = {stage: read_config(REPO / "config" / f"{stage}.yaml") for stage in stages}
    assert [written[s].get("init") for s in stages] == [
        None, "runs/nll_model/best.pt", "runs/nll_random_model/last.pt", "runs/default_model.onnx",
        "runs/mottled_look_model.onnx"]
    assert [written[s]["out"] for s in stages] == [f"runs/{s}" for s in stages]
    for parent, stage in zip([None] + stages, stages):
        init = [] if parent is None else ["--init", str(tmp_path / written[stage]["init"])]
        assert main(["train", "--config", str(REPO / "config" / f"{stage}.yaml"), *flags, *init,
                     "--out", str(tmp_path / written[stage]["out"])]) == 0
        state = torch.load(tmp_path / written[stage]["out"] / "last.pt", weights_only=True)
        overridden = {**cut, **({"init": init[1]} if init else {})}
        kept = {k: v for k, v in written[stage].items() if k not in ("threads", "out")}
        assert all(state["config"][k] == overridden.get(k, v) for k, v in kept.items())
        meta = export_checkpoint(tmp_path / f"runs/{stage}/last.pt", tmp_path / f"runs/{stage}.onnx")["metadata"]
    assert written["default_model"]["synthetic_randomize"] > 0
    assert state["config"]["synthetic_look"] == optics.SIMULATOR_LOOK      # the last stages learn the simulator's look
    assert meta["arch"] == "plain7" and meta["preprocess"]["input_px"] == 96 and meta["input_view"] == "crop"
    assert meta["sigma_output"] == "offset_sigma" and meta["source_commit"] != "unknown"


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*_model.yaml")))
def test_every_model_recipe_in_config_is_a_valid_training_config(name):
    """Each config/*_model.yaml is read by `train --config` (as main() reads it) into a valid TrainConfig.

    The bundled recipe's stages, candidates and experiments alike; each writes to runs/<its name>.
    """
    from celegans_autofocus.cli import _load_config, build_parser

    path = REPO / "config" / name
    parser, subparsers = build_parser()
    _load_config(subparsers["train"], path)
    args = parser.parse_args(["train", "--config", str(path)])
    assert Path(args.out) == Path("runs") / path.stem
    TrainConfig.from_dict({k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__})


def test_the_pool_key_changes_only_on_purpose():
    """A saved pool is taken by its key; a key that moves re-renders every user's pool (~11 min), so pin it.

    Update the literal only with a change that must re-render pools (the renderer, the recipe's defaults).
    """
    spec = PreprocessSpec(input_px=32)
    key = SyntheticPool(TrainConfig(**SYNTH), spec)._key()
    assert key == "a4081fe426780b6c4d5fd04e42ae7d12b9aed4d78a9b6cc5e488f8127e914832"
    contrast_cfg = TrainConfig(**SYNTH, normalize="contrast")
    assert SyntheticPool(contrast_cfg, contrast_cfg.spec)._key() != key


def test_randomised_views_draw_other_optics_and_leave_the_default_pool_alone():
    """synthetic_randomize: that share of views goes through core.randomize's optics; 0 keeps the old pool exactly."""
    spec = PreprocessSpec(input_px=32)
    plain = SyntheticPool(TrainConfig(**SYNTH), spec)
    zero = SyntheticPool(TrainConfig(**{**SYNTH, "synthetic_randomize": 0.0}), spec)
    every = SyntheticPool(TrainConfig(**{**SYNTH, "synthetic_randomize": 1.0}), spec)
    for pool in (plain, zero, every):
        pool.update(0)
    assert np.array_equal(plain.images, zero.images) and plain._key() == zero._key()
    assert every._key() != plain._key()  # a saved default pool is not taken for a randomised recipe
    assert not np.array_equal(every.images, plain.images)
    again = SyntheticPool(TrainConfig(**{**SYNTH, "synthetic_randomize": 1.0}), spec)
    again.update(0)
    assert np.array_equal(every.images, again.images)  # still a pure function of the seed
    with pytest.raises(ValueError, match="synthetic_randomize"):
        TrainConfig(**{**SYNTH, "synthetic_randomize": 1.5}).validate()


def test_synthetic_look_renders_training_and_validation_views_through_that_look(monkeypatch):
    """synthetic_look: the views not randomised (and the validation) have core.optics.LOOKS' look; a new pool key."""
    spec = PreprocessSpec(input_px=32)
    drawn = []
    look_config = optics.look_config
    monkeypatch.setattr(optics, "look_config", lambda name: drawn.append(name) or look_config(name))
    plain = SyntheticPool(TrainConfig(**SYNTH), spec)
    real = SyntheticPool(TrainConfig(**{**SYNTH, "synthetic_look": "real_adult"}), spec)
    for pool in (plain, real):
        pool.update(0)
    assert real._key() != plain._key() and real.optics == optics.look_config("real_adult")
    assert not np.array_equal(real.images, plain.images)
    val = {look: SyntheticValidation(TrainConfig(**{**SYNTH, "synthetic_val": 10, "synthetic_look": look}), spec)
           for look in ("default", "real_adult")}
    assert not np.array_equal(val["default"].images, val["real_adult"].images)
    both = SyntheticPool(TrainConfig(**{**SYNTH, "synthetic_look": ["default", "real_adult"]}), spec)
    drawn.clear()
    both.update(0)
    assert set(drawn) == {"default", "real_adult"}  # each view drew one of the two
    assert both._key() not in (plain._key(), real._key())
    assert not np.array_equal(both.images, plain.images) and not np.array_equal(both.images, real.images)
    assert TrainConfig(**{**SYNTH, "synthetic_look": ["real_adult"]}).to_dict() == real.cfg.to_dict()  # one spelling
    for bad in ("fancy", ["default", "fancy"], [], None, 3):
        with pytest.raises(ValueError, match=f"synthetic_look must be one of {', '.join(optics.LOOKS)} or a list"):
            TrainConfig(**{**SYNTH, "synthetic_look": bad}).validate()


def test_init_starts_from_a_checkpoints_weights(tmp_path):
    """--init: the run starts from the given weights (at a vanishing lr they are still there), not fresh ones."""
    from celegans_autofocus.training.checkpoint import load_checkpoint

    first = train(None, TrainConfig(**{**SYNTH, "epochs": 1}), tmp_path / "first")
    still = {**SYNTH, "epochs": 1, "seed": 7, "lr": 1e-12, "weight_decay": 0.0}
    warm = train(None, TrainConfig(**{**still, "init": first["best"]}), tmp_path / "warm")
    fresh = train(None, TrainConfig(**still), tmp_path / "fresh")
    weights = {name: load_checkpoint(run["last"])["model"] for name, run in
               (("first", first), ("warm", warm), ("fresh", fresh))}
    learnt = [k for k in weights["first"] if "running" not in k and "num_batches" not in k]
    assert max(float((weights["warm"][k] - weights["first"][k]).abs().max()) for k in learnt) < 1e-6
    assert max(float((weights["fresh"][k] - weights["first"][k]).abs().max()) for k in learnt) > 1e-2
    with pytest.raises(CheckpointError, match="--init needs arch"):
        train(None, TrainConfig(**{**SYNTH, "epochs": 1, "arch": "convnextv2_atto", "init": first["best"]}),
              tmp_path / "other")


def test_init_from_an_export_keeps_its_function(tmp_path):
    """--init MODEL.onnx, then --init of that run's checkpoint: the folded BatchNorms stay frozen all along."""
    from celegans_autofocus.training.checkpoint import FROZEN_NORMS, load_checkpoint
    from celegans_autofocus.training.export import export_checkpoint
    from celegans_autofocus.training.onnx_import import model_from_onnx

    first = train(None, TrainConfig(**{**SYNTH, "epochs": 1}), tmp_path / "first")
    export_checkpoint(first["last"], tmp_path / "first.onnx")
    still = {**SYNTH, "epochs": 1, "seed": 7, "lr": 1e-12, "weight_decay": 0.0, "init": str(tmp_path / "first.onnx")}
    warm = train(None, TrainConfig(**still), tmp_path / "warm")
    again = train(None, TrainConfig(**{**still, "init": warm["last"]}), tmp_path / "again")
    assert [load_checkpoint(run["last"])[FROZEN_NORMS] for run in (first, warm, again)] == [False, True, True]
    x = torch.randn(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    for name, run in (("warm", warm), ("again", again)):
        export_checkpoint(run["last"], tmp_path / f"{name}.onnx")
    with torch.no_grad():
        outputs = [model_from_onnx(tmp_path / f"{name}.onnx")[0](x) for name in ("first", "warm", "again")]
    scale = max(1.0, float(outputs[0].abs().max()))
    assert all(float((out - outputs[0]).abs().max()) < 1e-4 * scale for out in outputs[1:])
    with pytest.raises(CheckpointError, match=r"--init needs \(arch, outputs, output_scale, input_px\)"):
        train(None, TrainConfig(**{**still, "input_px": 48}), tmp_path / "other")
    with pytest.raises(CheckpointError, match="--init file not found"):
        train(None, TrainConfig(**{**still, "init": str(tmp_path / "missing.onnx")}), tmp_path / "missing")


def test_real_frames_are_checked_every_epoch_as_the_exported_model_reads_them(tmp_path):
    """--real-frames: each epoch logs, per source, the median answer on the detector's crops; the export agrees."""
    import cv2

    from celegans_autofocus.core.detection import crop_window
    from celegans_autofocus.core.predictor import FocusPredictor
    from celegans_autofocus.core.real_frames import worm_crops
    from celegans_autofocus.training.data import DatasetError
    from celegans_autofocus.training.export import PARITY_TOL_STEPS, export_checkpoint

    config = optics.OpticsConfig()
    sharp, blank = tmp_path / "real" / "sharp", tmp_path / "real" / "blank"
    for folder in (sharp, blank):
        folder.mkdir(parents=True)
        (folder / "frames.yaml").write_text(f"um_per_px: {config.um_per_px}\n")
    rng = np.random.default_rng(5)
    for i in range(3):  # in-focus worms, windows as a camera would see them
        scene = optics.make_scene(rng, config, 1)
        window = crop_window(scene.worms[0].centroid_px, 400, (config.frame_height_px, config.frame_width_px))
        frame = optics.StackRenderer(scene, config, None, window, seed=i, max_offset_steps=5).frame(0.0)
        cv2.imwrite(str(sharp / f"frame_{i}.png"), frame)
    cv2.imwrite(str(blank / "empty.png"), np.full((300, 300), 180, np.uint8))  # no worm: no crop, no answer

    run = train(None, TrainConfig(**{**SYNTH, "epochs": 2, "real_frames": str(tmp_path / "real"),
                                     "real_frames_fov_px": 300}), tmp_path / "run")
    logged = [e["real_median_steps"] for e in run["history"]]
    assert len(logged) == 2 and all(set(m) == {"sharp"} for m in logged)
    export_checkpoint(run["last"], tmp_path / "last.onnx")
    crops = worm_crops(tmp_path / "real", [300, 200])
    assert crops["blank"] == (1, {300: [], 200: []}) and [len(c) for c in crops["sharp"][1].values()] == [3, 3]
    assert crops["sharp"][1][200][0].shape == (200, 200)
    exported = FocusPredictor(tmp_path / "last.onnx", providers=["CPUExecutionProvider"])
    median = float(np.median([exported.predict(c) for c in crops["sharp"][1][300]]))
    assert abs(logged[-1]["sharp"] - median) < PARITY_TOL_STEPS
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        train(None, TrainConfig(**{**SYNTH, "real_frames": str(tmp_path / "none")}), tmp_path / "run_none")
