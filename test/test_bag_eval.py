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

"""Tests of bag-eval on generated bags (real rosbag2 files, real ONNX models).

Truth and sweep references, every image encoding and CompressedImage, both storages, and each bad input.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from celegans_autofocus import recording as rec
from celegans_autofocus.cli import main
from celegans_autofocus.core import optics
from celegans_autofocus.core.dataset.labels import read_labels
from celegans_autofocus.core.dataset.writer import StackWriter
from celegans_autofocus.core.detection import WormCropper, crop_image, crop_window
from celegans_autofocus.core.metrics import SUMMARY_KEYS
from celegans_autofocus.core.predictor import FocusPredictor
from onnx_models import gradient_energy_model, make_metadata, pixel_model
from test_closed_loop import A, B, EncodedOffsetFrames

NS = 1_000_000_000


@pytest.fixture(scope="module")
def oracle_model(tmp_path_factory) -> Path:
    """pixel_model that predicts EncodedOffsetFrames' offset exactly (see test_closed_loop)."""
    return pixel_model(tmp_path_factory.mktemp("m") / "oracle.onnx", a=A, b=B, input_px=128)


def _image(gray: np.ndarray, encoding: str, t_ns: int):
    if encoding == "compressed":
        data = cv2.imencode(".png", gray)[1].tobytes()
        return rec.typestore().types[rec.COMPRESSED_IMAGE_TYPE](
            header=rec.header(t_ns, "camera"), format="png", data=np.frombuffer(data, np.uint8))
    if encoding == "mono16":
        return rec.image_msg(gray.astype(np.uint16) * 257, t_ns, encoding="mono16")
    if encoding in ("rgb8", "bgra8"):
        channels = 3 if encoding == "rgb8" else 4
        return rec.image_msg(np.repeat(gray[:, :, None], channels, axis=2), t_ns, encoding=encoding)
    return rec.image_msg(gray, t_ns, encoding=encoding)


def write_truth_bag(path: Path, storage: str = "mcap", encoding: str = "mono8", n: int = 12,
                    namespace: str = "", live_bias_steps: float = 5.0) -> list[float]:
    frames = EncodedOffsetFrames()
    offsets = [float(o) for o in np.linspace(-150, 150, n).round()]
    with rec.BagRecorder(path, storage=storage) as bag:
        for i, off in enumerate(offsets):
            t = NS + i * NS // 15
            bag.write_msg(f"{namespace}camera/image_raw", _image(frames.frame(off, 0), encoding, t), t + 1000)
            bag.write_msg(f"{namespace}sim/ground_truth", rec.point_stamped_msg(0, 0, off, t), t + 2000)
            bag.write_msg(f"{namespace}focus/offset", rec.point_stamped_msg(0, 0, off + live_bias_steps, t),
                          t + 3000)
    return offsets


@pytest.mark.parametrize("storage,encoding", [("mcap", "mono8"), ("sqlite3", "mono8"), ("mcap", "mono16"),
                                              ("mcap", "rgb8"), ("sqlite3", "bgra8"), ("mcap", "compressed")])
def test_truth_reference_every_encoding(tmp_path, oracle_model, capsys, storage, encoding):
    offsets = write_truth_bag(tmp_path / "bag", storage, encoding, namespace="/robot1/")
    rc = main(["bag-eval", str(tmp_path / "bag"), "--model", str(oracle_model),
               "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    report = json.loads((tmp_path / "r.json").read_text())
    model = report["results"]["model oracle.onnx"]
    assert model["n"] == len(offsets) and model["mae_steps"] < 1.0 and model["sign_accuracy"] == 1.0
    live = report["results"]["recorded /robot1/focus/offset"]
    assert set(model) == set(live) == set(SUMMARY_KEYS)  # the same keys as evaluate and sim
    assert live["bias_steps"] == pytest.approx(5.0) and live["in_focus_fraction"] == 1.0
    assert [f["true_offset_steps"] for f in report["frames"]] == offsets
    assert report["info"]["topics"]["image"] == "/robot1/camera/image_raw"
    assert "| model oracle.onnx | 12 |" in out.out
    assert (tmp_path / "r.png").stat().st_size > 10_000


def _worm_frames(true_best: int, noise_dn: float = 0.0):
    """Frame at motor z of a simulated worm crop whose best plane is ``true_best``, plus camera noise (grey levels)."""
    cfg = optics.OpticsConfig()
    scene = optics.make_scene(np.random.default_rng(2), cfg, 1)
    window = crop_window(scene.worms[0].centroid_px, 128, (cfg.frame_height_px, cfg.frame_width_px))
    renderer = optics.StackRenderer(scene, cfg, (128, 128), window_px=window, seed=0)
    if not noise_dn:
        return lambda z: renderer.frame(true_best - z)
    rng = np.random.default_rng(7)

    def noisy(z: int) -> np.ndarray:
        return np.clip(renderer.frame(true_best - z) + rng.normal(0.0, noise_dn, (128, 128)), 0, 255).astype(np.uint8)
    return noisy


def _emitter_frames(true_best: int):
    """Frame at motor z of bright points on a dark ground (fluorescence), blurred with defocus."""
    rng = np.random.default_rng(4)
    points = np.zeros((128, 128))
    points[rng.integers(8, 120, 40), rng.integers(8, 120, 40)] = 1200.0  # in focus below 255: no clipping

    def frame(z: int) -> np.ndarray:
        sigma_px = 1.0 + 0.05 * abs(z - true_best)
        image = 10 + cv2.GaussianBlur(points, (0, 0), sigma_px) + rng.normal(0, 1, points.shape)
        return np.clip(image, 0, 255).astype(np.uint8)
    return frame


def _sweep_bag(tmp_path: Path, zs: list[int], frame_at) -> Path:
    """Write a sweep bag of ``frame_at(z)``, and the same frames as a dataset stack beside it."""
    with rec.BagRecorder(tmp_path / "sweep", storage="sqlite3") as bag, \
            StackWriter(tmp_path / "ds" / "plates" / "p" / "s", {"step_um": 5.0}) as stack:
        for i, z in enumerate(zs):
            t = NS + i * NS // 10
            frame = frame_at(z)
            bag.write_msg("stepper/joint_states", rec.joint_state_msg(["focus"], [z], t - NS // 20), t - NS // 20)
            bag.write_msg("camera/image_raw", rec.image_msg(frame, t), t)
            stack.add(z, frame)
        # a frame 10 ms after the motor reported a new position: taken while moving, not used
        t = NS + len(zs) * NS // 10
        bag.write_msg("stepper/joint_states", rec.joint_state_msg(["focus"], [200], t - NS // 100), t - NS // 100)
        bag.write_msg("camera/image_raw", rec.image_msg(frame_at(200), t), t)
    return tmp_path / "sweep"


def _sweep_eval(tmp_path: Path, bag: Path, chosen: list[str], name: str = "r") -> dict:
    model = gradient_energy_model(tmp_path / "g.onnx", a=-50.0, b=40.0, input_px=64)
    rc = main(["bag-eval", str(bag), "--model", str(model), *chosen,
               "--json", str(tmp_path / f"{name}.json"), "--plot", str(tmp_path / "r.png")])
    assert rc == 0
    return json.loads((tmp_path / f"{name}.json").read_text())


@pytest.mark.parametrize("measure, noise_dn", [(None, 0.0), ("vollath_f5", 0.0), (None, 30.0)])
def test_sweep_reference_labels_as_label_does(tmp_path, measure, noise_dn):
    """The sweep's best z and flag are label's: its default labeller (auto), or the one --measure names.

    With camera noise that dominates the raw curves, both read the pre-filtered ones (raw: z=16, pre-filtered: 20).
    """
    true_best, zs = 20, list(range(-60, 61, 4))
    chosen = [] if measure is None else ["--measure", measure]
    report = _sweep_eval(tmp_path, _sweep_bag(tmp_path, zs, _worm_frames(true_best, noise_dn)), chosen)
    info = report["info"]
    assert info["reference"] == "sweep" and info["frames_moving"] == 1 and info["sweep_positions"] == len(zs)
    assert info["measure"] == (measure or "auto")
    assert [f["true_offset_steps"] for f in report["frames"]] == [info["best_z_steps"] - z for z in zs]
    assert main(["label", str(tmp_path / "ds"), "--from-measure", "--quiet", *chosen]) in (0, 1)
    labels = read_labels(tmp_path / "ds" / "labels.csv")
    assert {r.best_index for r in labels} == {info["best_z_steps"]}  # one rule for both commands
    assert {r.ambiguous for r in labels} == {info["ambiguous"] is not None}
    if measure is None:
        assert abs(info["best_z_steps"] - true_best) <= 8 and info["contrast_mode"] == "absorption"
        assert ("@" in info["best_from"]) == bool(noise_dn)  # the noisy sweep was read on pre-filtered images


def test_sweep_default_finds_an_emitters_focus(tmp_path):
    """Bright points on a dark ground: auto reads the emitter's contrast peak.

    detail_skewness, bag-eval's old labeller, peaks at a defocused end.
    """
    true_best, zs = -12, list(range(-60, 61, 4))
    bag = _sweep_bag(tmp_path, zs, _emitter_frames(true_best))
    auto = _sweep_eval(tmp_path, bag, [], "auto")["info"]
    skew = _sweep_eval(tmp_path, bag, ["--measure", "detail_skewness"], "skew")["info"]
    assert auto["contrast_mode"] == "emission" and abs(auto["best_z_steps"] - true_best) <= 4
    assert abs(skew["best_z_steps"] - true_best) > 8


def _run(args: list[str], capsys) -> tuple[int, str]:
    rc = main(["bag-eval", *args])
    return rc, capsys.readouterr().err


def test_bad_bags_get_clear_errors(tmp_path, oracle_model, capsys):
    model = ["--model", str(oracle_model)]
    with rec.BagRecorder(tmp_path / "only_images") as bag:
        bag.write_msg("camera/image_raw", rec.image_msg(np.zeros((8, 8), np.uint8), NS), NS)
    rc, err = _run([str(tmp_path / "only_images"), *model], capsys)
    assert rc == 2 and "neither ground truth 'sim/ground_truth' nor joint states 'stepper/joint_states'" in err
    assert "it has: /camera/image_raw (sensor_msgs/msg/Image)" in err

    rc, err = _run([str(tmp_path / "only_images"), "--image-topic", "worm/crop", *model], capsys)
    assert rc == 2 and "no topic 'worm/crop'; it has: /camera/image_raw" in err

    with rec.BagRecorder(tmp_path / "custom") as bag:
        bag.add_topic("camera/image_raw", "my_msgs/msg/Blob", msgdef="uint8[] data\n")
        bag.write("camera/image_raw", rec.serialize(rec.point_stamped_msg(0, 0, 0, 0)), NS)
    rc, err = _run([str(tmp_path / "custom"), *model], capsys)
    assert rc == 2 and "unsupported message type my_msgs/msg/Blob" in err

    write_truth_bag(tmp_path / "cut")
    data_file = tmp_path / "cut" / "cut.mcap"
    data_file.write_bytes(data_file.read_bytes()[:-200])
    rc, err = _run([str(tmp_path / "cut"), *model], capsys)
    assert rc == 2 and f"cannot open bag {tmp_path / 'cut'} (truncated or corrupt?)" in err

    rc, err = _run([str(tmp_path / "nowhere"), *model], capsys)
    assert rc == 2 and "nowhere does not exist" in err

    write_truth_bag(tmp_path / "ok")
    rc, err = _run([str(tmp_path / "ok"), "--model", str(tmp_path / "missing.onnx")], capsys)
    assert rc == 2 and "missing.onnx: model file not found" in err

    rc, err = _run([str(tmp_path / "ok"), "--reference", "sweep", *model], capsys)
    assert rc == 2 and "no topic 'stepper/joint_states'" in err


def test_unmatched_stamps_and_undecodable_frames(tmp_path, oracle_model, capsys):
    frames = EncodedOffsetFrames()
    with rec.BagRecorder(tmp_path / "late") as bag:
        for i in range(3):
            t = NS + i * NS
            bag.write_msg("camera/image_raw", rec.image_msg(frames.frame(10.0, 0), t), t)
            bag.write_msg("sim/ground_truth", rec.point_stamped_msg(0, 0, 10.0, t + NS // 2), t)
    rc, err = _run([str(tmp_path / "late"), "--model", str(oracle_model)], capsys)
    assert rc == 2 and "no frame on /camera/image_raw has a truth reference" in err
    assert "(no /sim/ground_truth stamp within 1.0 ms of a frame stamp)" in err

    with rec.BagRecorder(tmp_path / "mixed") as bag:
        for i, off in enumerate([-50.0, 0.0, 50.0]):
            t = NS + i * NS // 10
            msg = _image(frames.frame(off, 0), "compressed", t)
            if i == 1:
                msg.data = np.frombuffer(b"broken", np.uint8)
            bag.write_msg("camera/image_raw", msg, t)
            bag.write_msg("sim/ground_truth", rec.point_stamped_msg(0, 0, off, t), t)
    rc = main(["bag-eval", str(tmp_path / "mixed"), "--model", str(oracle_model), "--json", str(tmp_path / "r.json"),
               "--plot", str(tmp_path / "r.png")])
    err = capsys.readouterr().err
    assert rc == 0 and "skipped 1 undecodable frame" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert [f["true_offset_steps"] for f in report["frames"]] == [-50.0, 50.0]
    assert len(report["info"]["undecodable_frames"]) == 1


def test_crop_model_on_camera_frames_predicts_on_the_detector_crop(tmp_path, capsys):
    """Evaluate a bag as `ros2 bag record /camera/image_raw /sim/ground_truth` writes it (648x486 frames).

    A crop model is fed the tracked worm's crop, exactly as worm_detector_node would cut it.
    """
    cfg = optics.OpticsConfig()
    scene = optics.make_scene(np.random.default_rng(4), cfg, 1)
    renderer = optics.StackRenderer(scene, cfg, (486, 648), seed=1)
    offsets = [-120.0, -40.0, 0.0, 30.0, 90.0]
    frames = [renderer.frame(o) for o in offsets]
    with rec.BagRecorder(tmp_path / "raw") as bag:
        for i, (off, gray) in enumerate(zip(offsets, frames)):
            t = NS + i * NS // 15
            bag.write_msg("camera/image_raw", rec.image_msg(gray, t), t)
            bag.write_msg("sim/ground_truth", rec.point_stamped_msg(0, 0, off, t), t)
    model = gradient_energy_model(tmp_path / "crop.onnx", a=-50.0, b=40.0, input_px=64,
                                  metadata=make_metadata(64, input_view="crop"))
    predictor = FocusPredictor(model)
    cropper = WormCropper(fov_px=500)
    expected = [predictor.predict(crop_image(g, cropper(g).window_px)) for g in frames]
    on_full = [predictor.predict(g) for g in frames]
    assert np.max(np.abs(np.subtract(expected, on_full))) > 1.0   # the view matters to this model

    rc = main(["bag-eval", str(tmp_path / "raw"), "--model", str(model), "--json", str(tmp_path / "r.json"),
               "--plot", str(tmp_path / "r.png")])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["info"]["view"] == "detect (fov 500 px of 2592)"
    assert [f["predicted_offset_steps"] for f in report["frames"]] == pytest.approx(expected, abs=1e-4)

    rc = main(["bag-eval", str(tmp_path / "raw"), "--model", str(model), "--view", "as-recorded",
               "--json", str(tmp_path / "r2.json"), "--plot", str(tmp_path / "r2.png")])
    report = json.loads((tmp_path / "r2.json").read_text())
    assert rc == 0 and report["info"]["view"] == "as-recorded"
    assert [f["predicted_offset_steps"] for f in report["frames"]] == pytest.approx(on_full, abs=1e-4)


def test_crop_model_prefers_the_recorded_crop_topic(tmp_path):
    frames = EncodedOffsetFrames()
    with rec.BagRecorder(tmp_path / "both") as bag:
        for i, off in enumerate([-60.0, 0.0, 60.0]):
            t = NS + i * NS // 15
            bag.write_msg("camera/image_raw", rec.image_msg(np.zeros((486, 648), np.uint8), t), t)
            bag.write_msg("worm/crop", rec.image_msg(frames.frame(off, 0), t), t)
            bag.write_msg("sim/ground_truth", rec.point_stamped_msg(0, 0, off, t), t)
    model = pixel_model(tmp_path / "oracle_crop.onnx", a=A, b=B, input_px=128,
                        metadata=make_metadata(128, input_view="crop"))
    rc = main(["bag-eval", str(tmp_path / "both"), "--model", str(model), "--json", str(tmp_path / "r.json"),
               "--plot", str(tmp_path / "r.png")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and report["info"]["topics"]["image"] == "/worm/crop" and report["info"]["view"] == "as-recorded"
    assert report["results"]["model oracle_crop.onnx"]["mae_steps"] < 1.0
    # --view detect finds the worm in the camera frames, never inside the recorded crops
    rc = main(["bag-eval", str(tmp_path / "both"), "--model", str(model), "--view", "detect",
               "--json", str(tmp_path / "d.json"), "--plot", str(tmp_path / "d.png")])
    report = json.loads((tmp_path / "d.json").read_text())
    assert rc == 0 and report["info"]["topics"]["image"] == "/camera/image_raw"
    assert main(["bag-eval", str(tmp_path / "both"), "--model", str(model), "--view", "detect",
                 "--image-topic", "worm/crop"]) == 2


@pytest.mark.parametrize("option", [["--fov", "8"], ["--full-width-px", "0"]])
def test_bad_view_options_are_named(tmp_path, oracle_model, capsys, option):
    write_truth_bag(tmp_path / "ok", n=3)
    rc, err = _run([str(tmp_path / "ok"), "--model", str(oracle_model), *option], capsys)
    assert rc == 2 and option[0] in err
