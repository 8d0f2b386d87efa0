"""`celegans-autofocus sim`: the closed loop of real nodes on one executor, in real time, on the simulator."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from celegans_autofocus.cli import main
from celegans_autofocus.core.predictor import FocusPredictor, ModelError, default_model_path
from celegans_autofocus.recording import BagReader
from onnx_models import constant_model, nan_model

FAST = ["--frame-height", "240"]  # 15 fps (the default); small frames for the models that do not need crops


def sim(tmp_path, *options: str) -> tuple[int, dict]:
    """Run the command as users do, in its own process: real time, so no threads left by other tests."""
    out = tmp_path / f"summary_{uuid.uuid4().hex[:6]}.json"
    args = ["sim", *FAST, "--namespace", "sim" + uuid.uuid4().hex[:8], "--summary-json", str(out), *options]
    # a domain of its own: no discovery traffic with the participants other tests left in this session
    domain_id = str(200 + (int(os.environ["ROS_DOMAIN_ID"]) + 1) % 30)
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": domain_id}
    proc = subprocess.run([sys.executable, "-m", "celegans_autofocus.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180)
    print(proc.stdout, proc.stderr)
    return proc.returncode, (json.loads(out.read_text()) if out.exists() else {})


def bundled_model():
    """The bundled model (models/default.onnx, found as the nodes find it)."""
    try:
        return default_model_path()
    except ModelError as exc:
        pytest.fail(f"the bundled model is missing: {exc}")


@pytest.mark.parametrize("start_offset", [150, -150])
def test_focus_converges_from_150_steps_with_the_bundled_model(tmp_path, start_offset):
    """The bundled model works on the detector's worm crop; the camera renders the field at 648x486.

    Real time on a shared machine: each move waits for the frames taken after the lens settled, so
    the frame count depends on the load (8-13 frames here); `bench` measures it in simulated time."""
    model = bundled_model()
    assert FocusPredictor(model).metadata["input_view"] == "crop"
    code, s = sim(tmp_path, "--model", str(model), "--frames", "120", "--start-offset", str(start_offset),
                  "--drift", "2", "--seed", "3", "--input", "crop", "--fov", "500", "--frame-height", "486")
    assert code == 0
    assert s["frames_to_focus"] is not None, f"never in focus: {s}"
    assert s["frames_to_focus"] <= 20, s             # 1.3 s at 15 fps; a search needs ~36 frames
    assert s["steady_abs_error_steps"] <= 10, s      # median |error| once focused: within the depth of field
    assert s["in_focus_fraction_tracking"] >= 0.4, s
    assert s["moves"] >= 1 and s["n_predictions"] >= 10


def test_loop_closes_through_the_nodes_and_writes_plot_and_bag(tmp_path):
    """A model that always says '+40 steps': every settled frame moves the lens 40 steps up, and the
    camera (player) sees it; the outputs of the command are all there."""
    model = constant_model(tmp_path / "plus40.onnx", 40.0, input_px=32)
    bag, png = tmp_path / "out" / "run_bag", tmp_path / "out" / "run.png"
    bag.mkdir(parents=True)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")   # an old bag: --overwrite
    code, s = sim(tmp_path, "--model", str(model), "--frames", "90", "--start-offset", "300", "--drift", "0",
                  "--random-walk", "0", "--record", str(bag), "--overwrite", "--plot", str(png))
    assert code == 0
    assert s["n_frames"] == 90 and s["n_predictions"] >= 30
    assert s["moves"] >= 2 and s["steps_travelled"] == pytest.approx(40 * s["moves"])
    # each move shortens the true offset by exactly 40 steps (frames taken mid-move see a lens in between)
    assert 300 - 40 * s["moves"] <= s["final_error_steps"] <= 300 - 40 * (s["moves"] - 2)
    assert s["in_focus_fraction"] <= 0.2
    for key in ("frames_to_focus", "final_error_steps", "in_focus_fraction", "latency_p50_ms", "latency_p95_ms"):
        assert key in s
    assert 0 < s["latency_p50_ms"] <= s["latency_p95_ms"]
    assert png.stat().st_size > 10_000
    with BagReader(bag) as reader:
        relative = {t.split("/", 2)[2]: t for t in reader.topics}      # /<namespace>/<topic>
        assert {"camera/image_raw", "focus/offset", "stepper/joint_states", "sim/ground_truth"} <= set(relative)
        truth = [m.point for _, _, _, m in reader.messages([relative["sim/ground_truth"]])]
    lens = np.array([p.x for p in truth])
    assert lens[0] == 0 and lens.max() >= 80 and np.all(np.diff(lens) >= 0)
    # a 40-step move takes 20 ms of a 100 ms frame period, so some frames catch the lens mid-move
    assert np.mean(lens % 40 == 0) >= 0.6, "the camera saw the lens away from the commanded positions"


def test_non_finite_model_never_moves_the_motor(tmp_path):
    code, s = sim(tmp_path, "--model", str(nan_model(tmp_path / "nan.onnx")), "--frames", "45",
                  "--drift", "0", "--random-walk", "0")
    assert code == 0
    assert s["n_predictions"] == 0 and s["frames_rejected"] >= 5
    assert s["moves"] == 0 and s["steps_travelled"] == 0
    assert s["final_error_steps"] == pytest.approx(150, abs=0.5)  # nothing moved: no drift, no motor


def test_crop_input_predicts_on_the_detector_crop(tmp_path):
    model = constant_model(tmp_path / "zero.onnx", 0.0, input_px=32)      # "in focus": the lens stays
    code, s = sim(tmp_path, "--model", str(model), "--frames", "45", "--input", "crop", "--fov", "1000")
    assert code == 0
    assert s["input"] == "crop" and s["n_frames"] == 45 and s["detector_frames"] >= 20
    assert s["n_predictions"] >= 20 and s["moves"] == 0


@pytest.mark.parametrize("case", ["missing_model", "corrupt_model", "bag_exists", "overwrite_not_a_bag",
                                  "duration", "frames"])
def test_bad_options_are_named(tmp_path, capsys, case):
    path = tmp_path / "thing"
    if case == "corrupt_model":
        path.write_bytes(b"not onnx at all")
    if case in ("bag_exists", "overwrite_not_a_bag"):
        path.mkdir()
        (path / "precious.txt").write_text("not a bag")
    options = {"missing_model": ["--model", str(path)], "corrupt_model": ["--model", str(path)],
               "bag_exists": ["--model", str(constant_model(tmp_path / "c.onnx", 1.0)), "--record", str(path)],
               "overwrite_not_a_bag": ["--record", str(path), "--overwrite"],
               "duration": ["--duration", "0"], "frames": ["--frames", "-1"]}[case]
    code = main(["sim", *options])
    err = capsys.readouterr().err
    assert code == 2
    assert {"duration": "--duration", "frames": "--frames"}.get(case, str(path)) in err
    assert "Traceback" not in err
    if case in ("bag_exists", "overwrite_not_a_bag"):
        assert (path / "precious.txt").exists()
