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

"""benchmarks/real_image_check.py runs from one command on a folder of frames and reports per folder."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from celegans_autofocus.core import optics
from benchmark_scripts import load_benchmark
from celegans_autofocus.core.detection import crop_window


def _load():
    return load_benchmark("real_image_check")


def test_reports_hits_and_predictions_per_folder(tmp_path: Path, capsys):
    config = optics.OpticsConfig()
    scene = optics.make_scene(np.random.default_rng(3), config, 1)
    window = crop_window(scene.worms[0].centroid_px, 900, (1944, 2592))
    frame = optics.StackRenderer(scene, config, None, window, seed=0, max_offset_steps=2).frame(0.0)
    sharp = tmp_path / "sim"
    sharp.mkdir()
    cv2.imwrite(str(sharp / "a.png"), frame)
    (sharp / "frames.yaml").write_text(yaml.safe_dump({"um_per_px": 1.55}))
    empty = tmp_path / "agar"
    empty.mkdir()
    cv2.imwrite(str(empty / "b.png"), np.full((400, 400), 180, np.uint8))
    (empty / "c.png").write_bytes(b"not a png")
    assert _load().main([str(tmp_path), "--fov", "500"]) == 0
    out, err = capsys.readouterr()
    assert f"skipped {empty / 'c.png'}: unreadable" in err
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    sim = [c.strip() for c in rows["sim"].split("|")[1:-1]]
    assert sim[:4] == ["sim", "1", "1", "500"] and abs(float(sim[4])) < 400
    agar = [c.strip() for c in rows["agar"].split("|")[1:-1]]
    assert agar[:3] == ["agar", "1", "0"] and agar[4] == "-"


def test_an_empty_folder_is_an_error(tmp_path: Path, capsys):
    assert _load().main([str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err


def test_the_real_frame_pipeline_is_shared(tmp_path: Path, capsys):
    """image_folders finds nested folders; read_frames rescales, caps and skips; every real-frame user shares them."""
    from celegans_autofocus.core import real_frames

    nested = tmp_path / "source" / "day1"
    nested.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(nested / f"f{i}.png"), np.full((300, 400), 100 + i, np.uint8))
    (nested / "frames.yaml").write_text(yaml.safe_dump({"um_per_px": 3.1}))
    (nested / "f9.png").write_bytes(b"broken")
    assert real_frames.image_folders(tmp_path) == [nested]
    frames = list(real_frames.read_frames(nested))
    assert [f.shape for f in frames] == [(600, 800)] * 3 and frames[2].dtype == np.uint8  # 3.1 um/px -> 1.55
    assert "f9.png: unreadable" in capsys.readouterr().err
    assert len(list(real_frames.read_frames(nested, max_frames=2))) == 2
    assert real_frames.worm_crop(frames[0], (10.0, 10.0), 100).shape == (100, 100)  # clamped inside the frame
    assert real_frames.folder_um_per_px(nested) == 3.1 and real_frames.folder_um_per_px(nested, 2.0) == 2.0
    for name in ("real_frame_perturbations", "background_texture"):
        module = load_benchmark(name)
        assert module.read_frames is real_frames.read_frames  # the shared pipeline, not a copy
    assert load_benchmark("real_image_check").check_real.report.__module__ == "celegans_autofocus.commands.check_real"
    assert load_benchmark("sim_vs_real").folder_um_per_px is real_frames.folder_um_per_px


def test_check_real_is_a_command(tmp_path: Path, capsys):
    """celegans-autofocus check-real: the same table from the installed package; bad input is a clear error."""
    from celegans_autofocus.cli import main as cli

    config = optics.OpticsConfig()
    scene = optics.make_scene(np.random.default_rng(4), config, 1)
    window = crop_window(scene.worms[0].centroid_px, 700, (config.frame_height_px, config.frame_width_px))
    frame = optics.StackRenderer(scene, config, None, window, seed=1, max_offset_steps=2).frame(0.0)
    (tmp_path / "mine").mkdir()
    cv2.imwrite(str(tmp_path / "mine" / "a.png"), frame)
    assert cli(["check-real", str(tmp_path), "--fov", "500", "--um-per-px", str(config.um_per_px)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mine ")]
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert len(rows) == 1 and cells[:4] == ["mine", "1", "1", "500"] and abs(float(cells[4])) < 400
    assert cli(["check-real", str(tmp_path / "missing")]) == 2
    assert "no images under" in capsys.readouterr().err
    assert cli(["check-real", str(tmp_path), "--model", str(tmp_path / "none.onnx")]) == 1
    assert "none.onnx: model file not found" in capsys.readouterr().err
    from onnx_models import pixel_model

    big = pixel_model(tmp_path / "big.onnx", input_px=384)  # reads views of 48 px or more: a 32 px crop is none
    assert cli(["check-real", str(tmp_path), "--fov", "32", "500", "--model", str(big),
                "--um-per-px", str(config.um_per_px)]) == 0
    rows = {line.split("|")[4].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| mine ")}
    assert rows["32"].split("|")[5].strip() == "-" and rows["500"].split("|")[5].strip() != "-"


def test_bad_frames_yaml_and_unreadable_frames_are_clear_errors(tmp_path: Path, capsys):
    """A bad frames.yaml or pixel size is named in one line (no traceback); no readable frame at all is an error."""
    from celegans_autofocus.cli import main as cli

    frame = np.full((200, 300), 120, np.uint8)
    for name, text, message in (("garbage", "um_per_px: [1.5\n: : :", "not readable YAML"),
                                ("word", "um_per_px: abc\n", "um_per_px must be a positive finite number, got 'abc'"),
                                ("negative", "um_per_px: -3\n", "um_per_px must be a positive finite number, got -3"),
                                ("list", "- 1.55\n", "must be a mapping")):
        folder = tmp_path / name
        folder.mkdir()
        cv2.imwrite(str(folder / "a.png"), frame)
        (folder / "frames.yaml").write_text(text)
        assert cli(["check-real", str(folder), "--fov", "100"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"check-real: {folder / 'frames.yaml'}: ") and message in err, err
        assert err.count("\n") == 1, err  # one line, no traceback
    assert cli(["check-real", str(tmp_path / "word"), "--fov", "100", "--um-per-px", "nan"]) == 2
    assert "--um-per-px must be a positive finite number, got nan" in capsys.readouterr().err

    broken = tmp_path / "broken"
    broken.mkdir()
    good = cv2.imencode(".png", frame)[1].tobytes()
    (broken / "truncated.png").write_bytes(good[: len(good) // 2])
    (broken / "junk.png").write_bytes(b"not a png")
    assert cli(["check-real", str(broken), "--fov", "100"]) == 2
    out, err = capsys.readouterr()
    assert f"skipped {broken / 'truncated.png'}: unreadable" in err and f"skipped {broken / 'junk.png'}" in err
    assert f"check-real: {broken}: no frame could be read" in err and not out
