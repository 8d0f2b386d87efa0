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

"""``label`` and ``crop`` through the CLI: drawn worm stacks, crops labelled as kind=crop, bad input."""
import math
import shutil

import cv2
import numpy as np
import pytest
import yaml

from celegans_autofocus.cli import main
from celegans_autofocus.core.dataset.labels import read_labels
from test_detection import draw_worm_frame

BEST_Z = 2
Z_RANGE = range(-4, 6, 2)  # stride 2 steps


@pytest.fixture(scope="module")
def worm_stack(tmp_path_factory):
    """One plate, one full-frame stack of two drawn worms, blurred by |z - BEST_Z|; truth in stack.yaml."""
    root = tmp_path_factory.mktemp("data")
    d = root / "plates" / "plateA" / "stack1"
    d.mkdir(parents=True)
    centres = [(900, 700), (2450, 1800)]  # the second one sits at the corner: its windows are clamped
    truth = None
    for z in Z_RANGE:
        frame, truth = draw_worm_frame(np.random.default_rng(10), centres, blur_px=3.0 * abs(z - BEST_Z))
        cv2.imwrite(str(d / f"z_{z}.png"), frame)
    (d / "stack.yaml").write_text(yaml.safe_dump({"step_um": 5.0, "true_best_index": BEST_Z}))
    return root, truth


def test_label_then_crop_then_label(worm_stack, tmp_path, capsys):
    src, truth = worm_stack
    root = tmp_path / "data"
    shutil.copytree(src / "plates", root / "plates")

    assert main(["label", str(root), "--measure", "vollath_f5", "--quiet"]) == 0
    full = read_labels(root / "labels.csv")
    assert len(full) == 5 and {r.best_index for r in full} == {BEST_Z}
    assert {r.z_index: r.offset_steps for r in full} == {z: BEST_Z - z for z in Z_RANGE}

    assert main(["crop", str(root), "--fov", "500", "--fov", "1250", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 crop stacks written" in out
    crops = sorted(p.name for p in (root / "plates" / "plateA").iterdir() if "__crop" in p.name)
    assert crops == ["stack1__crop1250_w0", "stack1__crop1250_w1", "stack1__crop500_w0", "stack1__crop500_w1"]
    for name in crops:
        d = root / "plates" / "plateA" / name
        meta = yaml.safe_load((d / "stack.yaml").read_text())
        x0, y0, w, h = meta["window_px"]
        assert meta["parent"] == "stack1" and meta["fov_px"] == w == h and meta["step_um"] == 5.0
        assert meta["true_best_index"] == BEST_Z and meta["reference_z"] == BEST_Z  # from labels.csv
        assert 0 <= x0 and x0 + w <= 2592 and 0 <= y0 and y0 + h <= 1944
        assert min(math.dist(meta["detection"]["centroid_px"], t) for t in truth) < 20
        parent = cv2.imread(str(root / "plates" / "plateA" / "stack1" / "z_0.png"), cv2.IMREAD_UNCHANGED)
        crop = cv2.imread(str(d / "z_0.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(crop, parent[y0:y0 + h, x0:x0 + w])  # one fixed window for every z
        assert sorted(p.name for p in d.glob("z_*.png")) == sorted(f"z_{z}.png" for z in Z_RANGE)

    assert main(["label", str(root), "--measure", "vollath_f5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "values reused     1" in out  # the full stack's images were not read again
    rows = read_labels(root / "labels.csv")
    crop_rows = [r for r in rows if r.kind == "crop"]
    assert len(crop_rows) == 20 and {r.fov_px for r in crop_rows} == {500, 1250}
    w0 = [r for r in crop_rows if r.stack == "stack1__crop500_w0"]
    assert {r.best_index for r in w0} == {BEST_Z}  # the sharpest crop is the in-focus plane

    # re-running crop without --overwrite keeps what is there and says so
    assert main(["crop", str(root), "--fov", "500", "--quiet"]) == 1
    assert "0 crop stacks written" in capsys.readouterr().out
    assert main(["crop", str(root), "--fov", "500", "--overwrite", "--max-worms", "1", "--quiet"]) == 0
    left = sorted(p.name for p in (root / "plates" / "plateA").iterdir() if "__crop500" in p.name)
    assert left == ["stack1__crop500_w0"]


def test_crop_skips_corrupt_file_by_name(worm_stack, tmp_path, capsys):
    src, _ = worm_stack
    root = tmp_path / "data"
    shutil.copytree(src / "plates", root / "plates")
    (root / "plates" / "plateA" / "stack1" / "z_-4.png").write_bytes(b"broken")
    assert main(["crop", str(root), "--fov", "750"]) == 1
    err = capsys.readouterr().err
    assert "z_-4.png" in err and "corrupt" in err
    crop = root / "plates" / "plateA" / "stack1__crop750_w0"
    assert sorted(p.name for p in crop.glob("z_*")) == sorted(f"z_{z}.png" for z in Z_RANGE if z != -4)
    assert main(["label", str(root)]) == 1  # labels written, but the corrupt file and the gap are reported
    captured = capsys.readouterr()
    assert "skipped: " in captured.err and "z_-4.png" in captured.err
    assert "skipped files       1" in captured.out and "flagged stacks      0" in captured.out
    assert len(read_labels(root / "labels.csv")) == 4 + 2 * 4


def test_label_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["label", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["label", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["label", str(tmp_path), "--measure", "sharpness9000"])
    assert "sharpness9000" in capsys.readouterr().err


def test_crop_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["crop", str(tmp_path), "--fov", "500"]) == 1
    assert "plates" in capsys.readouterr().err
    assert main(["crop", str(tmp_path), "--fov", "0"]) == 2
    assert "0" in capsys.readouterr().err
    (tmp_path / "plates" / "p" / "s").mkdir(parents=True)
    for z in range(3):
        cv2.imwrite(str(tmp_path / "plates" / "p" / "s" / f"z_{z}.png"), np.full((300, 400), 120, np.uint8))
    assert main(["crop", str(tmp_path), "--fov", "250"]) == 1
    assert "no worm detected" in capsys.readouterr().err


def test_synth_label_crop_label_on_optics_frames(tmp_path, capsys):
    """The simulator's stacks (quarter-size frames, so um_per_px = 6.2): crops centre on its worms."""
    root = tmp_path / "syn"
    assert main(["synth", str(root), "--plates", "1", "--stacks-per-plate", "1", "--range-steps", "16",
                 "--step-every", "8", "--width", "648", "--height", "486", "--worms", "1", "--seed", "5"]) == 0
    assert main(["label", str(root), "--quiet"]) == 0
    assert main(["crop", str(root), "--fov", "150", "--quiet"]) == 0
    parent = yaml.safe_load((root / "plates" / "plate_000" / "stack_000" / "stack.yaml").read_text())
    crop = yaml.safe_load((root / "plates" / "plate_000" / "stack_000__crop150_w0" / "stack.yaml").read_text())
    assert math.dist(crop["detection"]["centroid_px"], parent["worms"][0]["centroid_px"]) < 8  # image px
    assert crop["true_best_index"] == parent["true_best_index"] and crop["um_per_px"] == parent["um_per_px"]
    assert crop["reference_z"] == min((-16, -8, 0, 8, 16), key=lambda z: abs(z - parent["best_index"]))
    assert main(["label", str(root), "--quiet"]) == 0
    rows = read_labels(root / "labels.csv")
    assert {(r.stack, r.kind, r.fov_px) for r in rows} == {("stack_000", "full", 648),
                                                           ("stack_000__crop150_w0", "crop", 150)}
    assert all(r.offset_steps == parent["best_index"] - r.z_index for r in rows)


def test_label_default_flags_with_reason_and_plots_the_curves(worm_stack, tmp_path, capsys):
    src, _ = worm_stack
    root = tmp_path / "data"
    shutil.copytree(src / "plates", root / "plates")
    assert main(["label", str(root)]) == 0  # auto on the drawn worms (blurred, not optics: skewness nearly flat)
    captured = capsys.readouterr()
    assert "measure auto" in captured.out and "contrast modes      absorption 1" in captured.out
    rows = read_labels(root / "labels.csv")
    assert {r.best_index for r in rows} == {BEST_Z} and {r.measure.split(":")[0] for r in rows} == {"auto"}

    for z in (2, 4):  # the in-focus side is gone: the best remaining image is an end of the stack
        (root / "plates" / "plateA" / "stack1" / f"z_{z}.png").unlink()
    plots = tmp_path / "curves"
    assert main(["label", str(root), "--from-measure", "--plots", str(plots)]) == 0
    captured = capsys.readouterr()
    assert "flagged: plateA/stack1: best z " in captured.err and "end of the stack" in captured.err
    assert "flagged stacks      1" in captured.out
    assert (plots / "plateA__stack1.png").stat().st_size > 0
    assert all(r.ambiguous for r in read_labels(root / "labels.csv"))
    assert main(["label", str(root), "--agree-steps", "0"]) == 2
    assert "--agree-steps" in capsys.readouterr().err
    taken = tmp_path / "a_file"
    taken.write_text("mine")
    assert main(["label", str(root), "--plots", str(taken), "--quiet"]) == 1  # a path it cannot use: one line
    err = capsys.readouterr().err
    assert "a_file" in err and "Traceback" not in err and taken.read_text() == "mine"
