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

"""README's "Your microscope in 30 minutes", end to end in the simulator, on a microscope of other optics.

The microscope: stack_player_node with a lower magnification and darker worms than the bundled model was
trained on (benchmarks/finetune_other_optics.py's optics, on the default sensor), the simulated stepper and
worm_detector_node, on a real rclpy graph. Then the walkthrough's steps: `acquire --crops` a few stacks per
plate (another field of the plate: another scene), `label --plots`, `finetune` from models/default.onnx, and
the fine-tuned model, served by FocusPredictor, must beat the bundled one on the held-out plates' crops
against the simulator's truth by 15% (the issue's 30% is benchmarks/finetune.md's, on 10 training stacks of
finer steps; here, on 12 crop stacks of 11 images minus the flagged ones, the runs gave -28% and -29%).

Sized for CI (benchmarks/walkthrough.md: 105-110 s on 2 loaded cores): 18 stacks of 11 images at 10 fps (the
player's and detector's work per frame is what a loaded machine pays for), 20 epochs on the training plates'
crops (finetune leaves the stacks `label` flagged out). Deterministic where it matters: seeded scenes, best planes,
plate split and training order; the player runs on the wall clock (its sim clock needs a predictor and the
focus law answering every frame), so which noisy frame is kept at a position may differ between runs.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PointStamped
from rclpy.time import Time

from celegans_autofocus import cli
from celegans_autofocus.core.dataset.io import read_image
from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, make_scene
from celegans_autofocus.core.predictor import FocusPredictor, default_model_path
from celegans_autofocus.nodes.acquire_client import AcquireClient, AcquireRequest
from celegans_autofocus.nodes.stack_player_node import StackPlayerNode
from celegans_autofocus.nodes.stepper_controller_node import StepperControllerNode
from celegans_autofocus.nodes.worm_detector_node import WormDetectorNode

TRAINING = all(importlib.util.find_spec(name) is not None for name in ("torch", "onnx", "onnxscript"))
pytestmark = pytest.mark.skipif(not TRAINING, reason="needs the [train] extra (torch, onnx, onnxscript)")

#: benchmarks/finetune_other_optics.py's optics: the default look (OpticsConfig(), not the simulator's look the
#: bundled model's last stages learnt) at 0.65x the magnification, worms absorbing 4x / 2x more
OTHER_LOOK = {"look": "default"}
OTHER_OPTICS = {"um_per_px": 2.4, "body_absorb_per_um": 0.006, "cuticle_absorb_per_um": 0.1}
FRAME = {"frame_width_px": 648, "frame_height_px": 486}  # the whole field at 1/4 scale (the default look's measure
#                                                            peaks within 4 steps there: benchmarks/bench_real_adult.md)
PLATES, STACKS_PER_PLATE = 6, 3
VAL_FRACTION = 1 / 3         # finetune holds out 2 of the 6 plates
RANGE_STEPS, STEP_STEPS = 125, 25  # 11 images a stack; the best plane within 30 steps: offsets to +-155
BEST_Z_STEPS = (-30, 30)     # where the best plane is, around the lens at 0 ("roughly in focus")
EPOCHS, BATCH = 20, 8
MARGIN = 0.85                # the fine-tuned model's held-out MAE must be below 85% of the bundled one's


def acquire_plates(harness, dataset: Path) -> None:
    """One player per stack (another field of the plate); the stepper, detector and acquire client stay up."""
    harness.start(StepperControllerNode, diagnostics_period_s=0.2, max_speed_steps_per_s=4000.0,
                  reconnect_period_s=3600.0)
    harness.start(WormDetectorNode, fov_px=500)
    client = harness.add(AcquireClient(namespace=harness.namespace))
    targets = harness.probe.collect("worm/target", PointStamped)
    rng = np.random.default_rng(12)
    for plate in range(PLATES):
        for stack in range(STACKS_PER_PLATE):
            player = harness.start(StackPlayerNode, fps=10.0, seed=100 * plate + stack, n_worms=1,
                                   start_best_z_steps=float(rng.integers(*BEST_Z_STEPS, endpoint=True)),
                                   joint_name="focus", **FRAME, **OTHER_LOOK, **OTHER_OPTICS)
            # as on the tracker: acquire once the detector follows this worm (its last target was in the old field)
            started_ns = player.get_clock().now().nanoseconds
            assert harness.spin_until(lambda: any(Time.from_msg(t.header.stamp).nanoseconds >= started_ns
                                                  and t.point.z == 0 for t in targets), timeout_s=30)
            result = client.acquire(AcquireRequest(dataset, f"plate_{plate}", f"stack_{stack}", RANGE_STEPS,
                                                   STEP_STEPS, settle_s=0.05, crops=True, timeout_s=5.0))
            assert result.complete and result.problems == [] and result.crops_path is not None, result
            crops = yaml.safe_load((result.crops_path / "stack.yaml").read_text())["positions"].values()
            assert all(c["frames_since_seen"] == 0 for c in crops), "every crop holds the worm"
            harness.nodes.remove(player)
            harness.executor.remove_node(player)
            player.destroy_node()


def truth_offsets(crop_stack: Path) -> dict[Path, float]:
    """Each crop of ``crop_stack`` -> its true offset, best z minus z (the player's parameter in the parent)."""
    crop_meta = yaml.safe_load((crop_stack / "stack.yaml").read_text())
    parent = yaml.safe_load((crop_stack.parent / crop_meta["parent"] / "stack.yaml").read_text())
    best_z = parent["camera"]["parameters"]["start_best_z_steps"]
    return {crop_stack / f"z_{z}.png": best_z - z for z in crop_meta["positions"]}


def held_out_mae(model: Path, crops: dict[Path, float]) -> float:
    predictor = FocusPredictor(model, providers=["CPUExecutionProvider"])
    predicted = predictor.predict_batch([read_image(p) for p in crops])
    return float(np.mean(np.abs(predicted - np.array(list(crops.values())))))


def test_the_player_renders_the_other_optics(ros_harness):
    """The player's optics parameters reach the renderer: its frame is the other optics' render, not the default's."""
    player = ros_harness.start(StackPlayerNode, fps=1.0, seed=7, n_worms=1, **FRAME, **OTHER_LOOK, **OTHER_OPTICS)

    def render(config: OpticsConfig) -> np.ndarray:
        scene = make_scene(np.random.default_rng(7), config, 1)
        return StackRenderer(scene, config, (FRAME["frame_height_px"], FRAME["frame_width_px"]), seed=7).frame(30.0)

    frame = player.render(30.0)
    assert np.array_equal(frame, render(OpticsConfig(max_band_raster_px=0, **OTHER_OPTICS)))
    assert np.mean(np.abs(frame.astype(float) - render(OpticsConfig(max_band_raster_px=0)))) > 1.0


def test_your_microscope_in_30_minutes_in_the_simulator(ros_harness, tmp_path, capsys):
    data, t0 = tmp_path / "data", time.perf_counter()
    acquire_plates(ros_harness, data)
    t_acquire = time.perf_counter() - t0

    # label, with the curves of the flagged stacks drawn
    assert cli.main(["label", str(data), "--plots", str(tmp_path / "curves"), "--quiet"]) == 0
    with open(data / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    flagged = {(r["plate"], r["stack"]) for r in rows if r["ambiguous"] == "1"}
    assert sorted(p.name for p in (tmp_path / "curves").glob("*.png")) == sorted(
        f"{plate}__{stack}.png" for plate, stack in flagged)
    full = {(r["plate"], r["stack"]): int(r["best_index"]) for r in rows if r["kind"] == "full"}
    assert len(full) == PLATES * STACKS_PER_PLATE
    for (plate, stack), best in full.items():  # every miss of more than one image is flagged (and plotted)
        meta = yaml.safe_load((data / "plates" / plate / stack / "stack.yaml").read_text())
        truth = meta["camera"]["parameters"]["start_best_z_steps"]
        assert abs(best - truth) <= STEP_STEPS or (plate, stack) in flagged, (plate, stack, best, truth)

    # finetune from the bundled model; it holds out plates and prints the before/after table
    t1 = time.perf_counter()
    model = tmp_path / "finetuned.onnx"
    assert cli.main(["finetune", str(data), "--val-fraction", str(VAL_FRACTION), "--epochs", str(EPOCHS),
                     "--batch-size", str(BATCH), "--threads", "1", "--out", str(tmp_path / "run"),
                     "--export", str(model), "--json", str(tmp_path / "summary.json")]) == 0
    t_finetune = time.perf_counter() - t1
    assert "MAE" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    held_out = summary["val_plates"]
    assert len(held_out) >= 2 and not set(held_out) & set(summary["train_plates"])

    # the held-out plates' crops, scored against the simulator's truth (not the labels)
    crops: dict[Path, float] = {}
    for plate in held_out:
        for crop_stack in sorted((data / "plates" / plate).glob("*__crop*_tracked")):
            crops.update(truth_offsets(crop_stack))
    assert len(crops) == len(held_out) * STACKS_PER_PLATE * (2 * RANGE_STEPS // STEP_STEPS + 1)
    before, after = held_out_mae(default_model_path(), crops), held_out_mae(model, crops)
    with capsys.disabled():
        print(f"walkthrough: acquire {t_acquire:.0f} s, finetune {t_finetune:.0f} s; held-out crop MAE "
              f"{before:.1f} -> {after:.1f} steps (n = {len(crops)})")
    assert after < MARGIN * before, (before, after)
