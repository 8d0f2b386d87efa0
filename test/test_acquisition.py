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

"""Acquisition without ROS: the sweep plan, the settled-frame rule, the resumable stack writer, bag-to-dataset."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from celegans_autofocus import cli
from celegans_autofocus import recording as rec
from celegans_autofocus.commands.bag_to_dataset import bag_to_stack
from celegans_autofocus.core.acquisition import AcquireError, Rest, RestTracker, SweepPlan, sweep_positions
from celegans_autofocus.core.dataset.io import read_image
from celegans_autofocus.core.dataset.layout import discover
from celegans_autofocus.core.dataset.sweep import SweepRecording

S = 1_000_000_000  # ns per s


def test_sweep_plan_around_the_lens_and_its_limits():
    assert SweepPlan.around(20, 10, 3).z_steps == [10, 13, 16, 19, 22, 25, 28]
    assert SweepPlan.around(0, 8, 4).z_steps == [-8, -4, 0, 4, 8] and SweepPlan.around(5, 0, 4).z_steps == [5]
    for bad in (dict(range_steps=-1), dict(step_steps=0), dict(step_steps=2.5), dict(range_steps=True),
                dict(range_steps=math.nan)):
        with pytest.raises(AcquireError, match="must be an integer"):
            SweepPlan.around(**{"centre_steps": 0, "range_steps": 8, "step_steps": 4, **bad})
    with pytest.raises(AcquireError, match="cannot go in steps of 4"):
        SweepPlan(0, 6, 4)
    SweepPlan.around(900, 100, 4).check_limits(-1000, 1000)
    with pytest.raises(AcquireError, match=r"sweep z 799\.\.1003 steps leaves .* \[-1000, 1000\] by 3 steps"):
        SweepPlan.around(901, 102, 4).check_limits(-1000, 1000)
    assert SweepPlan.from_meta(SweepPlan(-8, 8, 4).to_meta()) == SweepPlan(-8, 8, 4)
    with pytest.raises(AcquireError, match="missing 'step_steps'"):
        SweepPlan.from_meta({"first_steps": 0, "last_steps": 8})


def test_rests_and_the_settled_frame_rule():
    tracker = RestTracker()
    for t_s, z in ((0.0, 0), (0.02, 0), (0.04, 2), (0.06, 4), (0.08, 4), (0.30, 4), (0.32, 5)):
        assert tracker.add(int(t_s * S), z)
    assert not tracker.add(int(0.31 * S), 4) and not tracker.add(int(0.4 * S), math.nan)  # older; garbage
    assert [(r.position_steps, r.start_ns, r.end_ns) for r in tracker.rests] == [
        (0, 0, int(0.02 * S)), (2, int(0.04 * S), int(0.04 * S)), (4, int(0.06 * S), int(0.30 * S)),
        (5, int(0.32 * S), int(0.32 * S))]
    rest = tracker.rests[2]
    assert not rest.holds(int(0.15 * S), 0.1) and rest.holds(int(0.16 * S), 0.1) and rest.holds(int(0.30 * S), 0.1)
    assert not rest.holds(int(0.31 * S), 0.1), "after the last sample that reports the position"


def scripted_rests(sweep_z: list[int], before_z: int, frames_per_rest: int = 3):
    """Rests of a sweep recording (before it, a move through single samples, the sweep, the return) and frames."""
    rests, frames, t = [], [], 0
    for z in [before_z, before_z - 3, sweep_z[0] + 1] + sweep_z + [sweep_z[-1] - 1, before_z]:
        moving = z not in sweep_z and z != before_z
        rests.append(Rest(z, t, t + (0 if moving else S // 2)))
        frames += [] if moving else [t + k * S // 8 for k in range(frames_per_rest)]
        t += S
    return rests, frames


def test_the_sweep_is_the_longest_evenly_spaced_run_of_settled_rests():
    rests, frames = scripted_rests([-8, -4, 0, 4, 8], before_z=0)
    found = sweep_positions(rests, frames, settle_s=0.1)
    assert [r.position_steps for r, _ in found] == [-8, -4, 0, 4, 8]
    assert all(t == r.start_ns + S // 8 for r, t in found), "the first frame at least settle_s after arrival"
    assert sweep_positions(rests, frames, settle_s=0.3) == [], "frames at +0, +0.125, +0.25 s: none settled"
    down, frames = scripted_rests([8, 4, 0, -4, -8], before_z=20)
    assert [r.position_steps for r, _ in sweep_positions(down, frames, 0.1)] == [8, 4, 0, -4, -8]
    assert sweep_positions([], [], 0.1) == []


def gray(value: int, shape=(24, 32)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


def new_recording(path: Path, plan=SweepPlan(-8, 8, 4)) -> SweepRecording:
    return SweepRecording(path, {"step_um": 5.0, "plate": "p", "stack": path.name, "sweep": plan.to_meta()})


def test_a_recording_keeps_each_image_and_resumes_only_the_missing_ones(tmp_path):
    path = tmp_path / "plates" / "p" / "s"
    first = new_recording(path)
    first.start()
    first.add(-8, gray(1), {"motor_steps": -8})
    first.add(-4, gray(2), {"motor_steps": -4})
    assert first.missing() == [0, 4, 8]
    # a killed run: z 0 written but never recorded, z 4 recorded but its file gone, temporary files left over
    (path / "z_0.png").write_bytes((path / "z_-8.png").read_bytes())
    meta = yaml.safe_load((path / "stack.yaml").read_text())
    meta["positions"][4] = {"motor_steps": 4}
    (path / "stack.yaml").write_text(yaml.safe_dump(meta))
    (path / ".z_8.png.abc123.png").write_bytes(b"partial")
    kept = (path / "z_-8.png").stat().st_ino

    with pytest.raises(AcquireError, match=r"holds an unfinished sweep \(3 of 5 images\); resume it"):
        new_recording(path)
    with pytest.raises(AcquireError, match="holds the sweep .* not .*'step_steps': 2"):
        SweepRecording(path, {"sweep": SweepPlan(-8, 8, 2).to_meta()}, resume=True)
    again = SweepRecording(path, {"sweep": SweepPlan(-8, 8, 4).to_meta()}, resume=True)
    again.start()
    assert again.missing() == [0, 4, 8] and not list(path.glob(".*"))
    for z in again.missing():
        again.add(z, gray(z + 100), {"motor_steps": z})
    again.finish()
    assert (path / "z_-8.png").stat().st_ino == kept and read_image(path / "z_0.png")[0, 0] == 100
    meta = yaml.safe_load((path / "stack.yaml").read_text())
    assert meta["complete"] and list(meta["positions"]) == [-8, -4, 0, 4, 8] and meta["plate"] == "p"
    found = discover(tmp_path)
    assert not found.failed and [s.z_steps for s in found.stacks] == [[-8, -4, 0, 4, 8]]
    with pytest.raises(AcquireError, match="is a complete sweep .5 images."):
        SweepRecording(path, {}, resume=True)


def test_a_recording_refuses_what_it_must_not_touch(tmp_path):
    with pytest.raises(AcquireError, match="nothing to resume"):
        SweepRecording(tmp_path / "none", {}, resume=True)
    (tmp_path / "foreign").mkdir()
    with pytest.raises(AcquireError, match="not an acquired stack .no stack.yaml."):
        new_recording(tmp_path / "foreign")
    (tmp_path / "foreign" / "stack.yaml").write_text("best_index: 3\n")
    with pytest.raises(AcquireError, match="not recorded by a sweep"):
        new_recording(tmp_path / "foreign")
    assert (tmp_path / "foreign" / "stack.yaml").read_text() == "best_index: 3\n"


def write_sweep_bag(path: Path, sweep_z: list[int], before_z: int = 0, joint: bool = True,
                    corrupt_z: int | None = None) -> dict[int, int]:
    """Write a bag as ``acquire`` leaves it; return each position's arrival stamp (ns).

    joint_states at 50 Hz (2 steps per sample while moving), frames at 25 fps whose pixels are the lens z + 100;
    frames at ``corrupt_z`` lose half their pixel data.
    """
    samples, arrival, t, z_now = [], {}, S, before_z
    for z, hold_s in [(before_z, 0.5)] + [(z, 0.4) for z in sweep_z] + [(before_z, 0.4)]:
        step = 2 if z > z_now else -2
        for p in (range(z_now + step, z, step) if z != z_now else []):
            samples.append((t, p))
            t += S // 50
        arrival.setdefault(z, t)
        for _ in range(int(hold_s * 50)):
            samples.append((t, z))
            t += S // 50
        z_now = z
    with rec.BagRecorder(path) as bag:
        for f in range(S + 7, t, S // 25):
            lens = [p for ts, p in samples if ts <= f][-1]
            msg = rec.image_msg(gray(lens + 100), f)
            if lens == corrupt_z:
                msg.data = msg.data[: len(msg.data) // 2]
            bag.write_msg("camera/image_raw", msg, f)
        for ts, p in samples if joint else []:
            bag.write_msg("stepper/joint_states", rec.joint_state_msg(["x", "focus"], [0.0, float(p)], ts), ts)
    return arrival


def test_bag_to_dataset_finds_the_sweep_and_its_first_settled_frames(tmp_path):
    arrival = write_sweep_bag(tmp_path / "bag", [-8, -4, 0, 4, 8], before_z=2)
    recording = bag_to_stack(tmp_path / "bag", tmp_path / "ds", "p", "s", settle_s=0.1)
    meta = yaml.safe_load((recording.path / "stack.yaml").read_text())
    assert meta["complete"] and meta["sweep"]["step_steps"] == 4 and meta["acquired_by"].endswith("bag-to-dataset")
    assert list(meta["positions"]) == [-8, -4, 0, 4, 8] and meta["camera"]["width_px"] == 32
    for z, pos in meta["positions"].items():
        assert read_image(recording.path / f"z_{z}.png")[0, 0] == z + 100, "each image shows its own z"
        stamp = int(round(pos["stamp_s"] * 1e9))
        assert pos["motor_steps"] == z and arrival[z] + S // 10 <= stamp < arrival[z] + S // 10 + S // 25, \
            "the first frame at least settle_s after the lens arrived"

    assert cli.main(["bag-to-dataset", str(tmp_path / "bag"), str(tmp_path / "ds"), "--plate", "p"]) == 0
    assert (tmp_path / "ds" / "plates" / "p" / "bag" / "z_8.png").is_file()
    assert cli.main(["bag-to-dataset", str(tmp_path / "bag"), str(tmp_path / "ds"), "--plate", "p"]) == 1, \
        "the stack exists now: refused, not overwritten"


def test_bag_to_dataset_errors_name_the_problem_and_write_nothing(tmp_path, capsys):
    write_sweep_bag(tmp_path / "nojoint", [-4, 0, 4], joint=False)
    with pytest.raises(rec.BagError, match="has no topic 'stepper/joint_states'"):
        bag_to_stack(tmp_path / "nojoint", tmp_path / "ds", "p", "s")
    write_sweep_bag(tmp_path / "still", [0])
    with pytest.raises(rec.BagError, match="no sweep found"):
        bag_to_stack(tmp_path / "still", tmp_path / "ds", "p", "s")
    assert cli.main(["bag-to-dataset", str(tmp_path / "missing"), str(tmp_path / "ds"), "--plate", "p"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
    write_sweep_bag(tmp_path / "corrupt", [-4, 0, 4], corrupt_z=4)     # the last position's frames are broken
    assert cli.main(["bag-to-dataset", str(tmp_path / "corrupt"), str(tmp_path / "ds"), "--plate", "p"]) == 1
    assert not (tmp_path / "ds" / "plates" / "p" / "corrupt").exists(), "no half-written stack is left"
    assert "image data has" in capsys.readouterr().err
    write_sweep_bag(tmp_path / "good" / "corrupt", [-4, 0, 4])         # the same stack name, now whole: written
    assert cli.main(["bag-to-dataset", str(tmp_path / "good" / "corrupt"), str(tmp_path / "ds"), "--plate", "p"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--plate", "../../escaped"], "plate name '../../escaped' must be one directory name"),
    (["--plate", "p", "--stack", "/abs/path"], "stack name '/abs/path' must be one directory name"),
    (["--plate", "", "--stack", "x"], "plate name '' must be one directory name"),
    (["--plate", "p", "--settle", "-1"], "--settle must be a finite number of seconds >= 0, got -1"),
    (["--plate", "p", "--um-per-px", "-3"], "--um-per-px must be a finite number > 0, got -3"),
    (["--plate", "p", "--timeout", "-1"], "--timeout must be a finite number > 0, got -1"),
    (["--plate", "p", "--timeout", "nan"], "--timeout must be a finite number > 0, got nan"),
])
def test_bad_acquire_options_are_refused_before_the_ros_graph_is_touched(tmp_path, capsys, monkeypatch, args, message):
    import rclpy

    def no_graph(*_, **__):
        raise AssertionError("rclpy.init reached: the options were not checked first")

    monkeypatch.setattr(rclpy, "init", no_graph)
    (tmp_path / "ds" / "plates" / "p").mkdir(parents=True)
    assert cli.main(["acquire", str(tmp_path / "ds"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"acquire: {message}") and err.count("\n") == 1, err  # one line, no traceback
    written = [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))]
    assert written == ["ds", "ds/plates", "ds/plates/p"]  # nothing written: not outside the dataset either


def test_bad_bag_to_dataset_options_are_refused_and_write_nothing(tmp_path, capsys):
    """--settle -1 once left a 1-image INCOMPLETE stack; a plate or stack name must stay inside the dataset."""
    write_sweep_bag(tmp_path / "bag", [-4, 0, 4])
    ds = tmp_path / "ds"
    for extra, rc, message in ((["--plate", "p", "--settle", "-1"], 2, "--settle must be a finite number"),
                               (["--plate", "p", "--um-per-px", "0"], 2, "--um-per-px must be a finite number > 0"),
                               (["--plate", "p", "--step-um", "-5"], 2, "--step-um must be a finite number > 0"),
                               (["--plate", ".."], 1, "plate name '..' must be one directory name"),
                               (["--plate", "p", "--stack", "../../escaped"], 1, "stack name '../../escaped'")):
        assert cli.main(["bag-to-dataset", str(tmp_path / "bag"), str(ds), *extra]) == rc, extra
        err = capsys.readouterr().err
        assert err.startswith("bag-to-dataset: ") and message in err and err.count("\n") == 1, err
    assert not ds.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
