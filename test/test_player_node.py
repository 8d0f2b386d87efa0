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

"""stack_player_node through its topics on real rclpy: synthetic and dataset sources, drift, sim time."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PointStamped
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from celegans_autofocus.core.optics import LOOKS, SIMULATOR_LOOK, OpticsConfig, StackRenderer, look_config, make_scene
from celegans_autofocus.nodes.common import ConfigError, image_to_array, s_to_stamp, stamp_to_s
from celegans_autofocus.nodes.stack_player_node import StackPlayerNode

SMALL = {"frame_width_px": 160, "frame_height_px": 120}  # the whole field at 1/16 scale: fast renders


class Rig:
    def __init__(self, harness, **params):
        self.h = harness
        self.node = harness.start(StackPlayerNode, **params)
        self.images = harness.probe.collect("camera/image_raw", Image)
        self.truth = harness.probe.collect("sim/ground_truth", PointStamped)
        self.joint_pub = harness.probe.publisher("stepper/joint_states", JointState)
        self.clock_pub = harness.probe.publisher("/clock", Clock)

    def move_lens(self, z_steps: float, name: str = "focus") -> None:
        self.joint_pub.publish(JointState(name=[name], position=[float(z_steps)]))
        assert self.h.spin_until(lambda: self.node.lens_z_steps == z_steps, timeout_s=15)

    def next_frame(self, lens_z: float | None = None) -> tuple[Image, PointStamped]:
        """Return the first image (and its ground truth) published from now on [with the lens at ``lens_z``]."""
        n = len(self.truth)

        def found():
            stamps = {(i.header.stamp.sec, i.header.stamp.nanosec): i for i in self.images}
            for truth in self.truth[n:]:
                key = (truth.header.stamp.sec, truth.header.stamp.nanosec)
                if key in stamps and (lens_z is None or truth.point.x == lens_z):
                    return stamps[key], truth
            return None

        assert self.h.spin_until(lambda: found() is not None, 5)
        return found()

    def set_clock(self, t_s: float) -> None:
        self.clock_pub.publish(Clock(clock=s_to_stamp(t_s)))
        assert self.h.spin_until(lambda: abs(self.node.get_clock().now().nanoseconds * 1e-9 - t_s) < 1e-6, 5)


def reference_frames(offsets_steps, seed=0, n_worms=3, shape=(120, 160)) -> list[np.ndarray]:
    """Render the same scene independently (other noise) at ``offsets_steps``, in the player's default look."""
    config = look_config(SIMULATOR_LOOK)
    renderer = StackRenderer(make_scene(np.random.default_rng(seed), config, n_worms), config, shape, seed=99)
    return [renderer.frame(o).astype(np.float32) for o in offsets_steps]


def nearest(msg: Image, references: list[np.ndarray]) -> int:
    image = image_to_array(msg).astype(np.float32)
    return int(np.argmin([np.mean((image - ref) ** 2) for ref in references]))


def test_synthetic_frames_follow_the_lens_and_publish_the_true_offset(ros_harness):
    rig = Rig(ros_harness, fps=50.0, start_best_z_steps=0.0, frame_id="sim_cam", **SMALL)
    assert ros_harness.wait_for_subscribers(rig.joint_pub)
    rig.move_lens(0.0)
    focused, truth = rig.next_frame(lens_z=0.0)
    assert (focused.width, focused.height, focused.encoding, focused.header.frame_id) == (160, 120, "mono8", "sim_cam")
    assert truth.header == focused.header and truth.point.z == 0.0
    rig.move_lens(-150.0)
    blurred, truth = rig.next_frame(lens_z=-150.0)
    assert truth.point.z == 150.0 and truth.point.x == -150.0 and truth.point.y == 0.0
    references = reference_frames([0.0, 150.0])
    assert nearest(focused, references) == 0 and nearest(blurred, references) == 1


def test_best_plane_drifts_and_jumps_in_sim_time(ros_harness):
    rig = Rig(ros_harness, use_sim_time=True, fps=10.0, start_best_z_steps=20.0, drift_steps_per_s=5.0,
              switch_times_s=[3.0], switch_jumps_steps=[-60.0], initial_z_steps=10.0, **SMALL)
    assert ros_harness.wait_for_subscribers(rig.clock_pub)
    rig.set_clock(100.0)
    first, truth0 = rig.next_frame()  # t = 0 of the player: the first frame
    assert stamp_to_s(first.header.stamp) == pytest.approx(100.0)
    assert truth0.point.y == pytest.approx(20.0) and truth0.point.z == pytest.approx(10.0)
    rig.set_clock(102.0)
    _, truth2 = rig.next_frame()
    assert stamp_to_s(truth2.header.stamp) == pytest.approx(102.0)
    assert truth2.point.y == pytest.approx(30.0)  # 20 + 5 steps/s * 2 s of tilt drift
    rig.set_clock(104.0)
    _, truth4 = rig.next_frame()
    assert truth4.point.y == pytest.approx(20.0 + 5.0 * 4 - 60.0)  # and the jump to another worm at 3 s


def test_joint_name_selects_the_focus_joint(ros_harness):
    rig = Rig(ros_harness, joint_name="focus", fps=20.0, **SMALL)
    assert ros_harness.wait_for_subscribers(rig.joint_pub)
    rig.node.get_logger().set_level(40)
    rig.joint_pub.publish(JointState(name=["x", "focus"], position=[5.0, 33.0]))
    assert ros_harness.spin_until(lambda: rig.node.lens_z_steps == 33.0, 5)
    rig.joint_pub.publish(JointState(name=["x"], position=[7.0]))  # no focus joint: lens stays
    rig.joint_pub.publish(JointState(name=["focus"], position=[float("nan")]))  # garbage: lens stays
    rig.joint_pub.publish(JointState(name=["focus"], position=[1e300]))  # no position either (the renderer hung)
    ros_harness.spin_for(0.2)
    assert rig.node.lens_z_steps == 33.0
    n = len(rig.images)
    assert ros_harness.spin_until(lambda: len(rig.images) > n + 1, 5), "the player stopped"


def write_stack(root: Path, z_values=range(-4, 5), best_index: int | None = 0) -> Path:
    """Write a dataset with one stack whose image z_<i> is filled with the value 100 + 10 i."""
    stack = root / "plates" / "p1" / "s1"
    stack.mkdir(parents=True)
    for z in z_values:
        cv2.imwrite(str(stack / f"z_{z}.png"), np.full((40, 60), 100 + 10 * z, np.uint8))
    if best_index is not None:
        (stack / "stack.yaml").write_text(yaml.safe_dump({"step_um": 5.0, "best_index": best_index}))
    return stack


def served_z(msg: Image) -> int:
    return (int(image_to_array(msg)[0, 0]) - 100) // 10


def test_dataset_serves_the_image_whose_offset_matches(tmp_path, ros_harness):
    write_stack(tmp_path, z_values=range(-4, 5, 2), best_index=2)  # z -4 -2 0 2 4, best at 2
    rig = Rig(ros_harness, source="dataset", dataset=str(tmp_path), fps=50.0, initial_z_steps=0.0)
    assert ros_harness.wait_for_subscribers(rig.joint_pub)
    image, truth = rig.next_frame()  # best_z = 0 (start_best_z_steps), lens 0: offset 0 -> z = best = 2
    assert truth.point.z == 0.0 and served_z(image) == 2
    rig.move_lens(3.0)  # offset -3 -> z = 2 + 3 = 5 -> nearest written z is 4
    image, truth = rig.next_frame(lens_z=3.0)
    assert truth.point.z == -3.0 and served_z(image) == 4
    rig.move_lens(-5.0)  # offset +5 -> z = -3 -> nearest is -4 or -2
    image, _ = rig.next_frame(lens_z=-5.0)
    assert served_z(image) in (-4, -2)
    rig.move_lens(-50.0)  # beyond the stack: its end is shown
    image, truth = rig.next_frame(lens_z=-50.0)
    assert served_z(image) == -4 and truth.point.z == 50.0  # truth stays physical at the stack's end


def test_dataset_corrupt_image_is_skipped_and_the_next_nearest_served(tmp_path, ros_harness):
    stack = write_stack(tmp_path, best_index=0)
    (stack / "z_0.png").write_bytes(b"\x89PNG truncated")
    rig = Rig(ros_harness, source="dataset", dataset=str(tmp_path), fps=50.0)
    rig.node.get_logger().set_level(40)
    image, truth = rig.next_frame()
    assert truth.point.z == 0.0 and served_z(image) in (-1, 1)
    assert 0 not in rig.node.dataset.z_steps


def test_dataset_best_index_from_labels_csv(tmp_path, ros_harness):
    from celegans_autofocus.core.dataset.labelling import label_dataset

    write_stack(tmp_path, best_index=None)
    label_dataset(tmp_path, "vollath_f4")
    node = ros_harness.start(StackPlayerNode, source="dataset", dataset=str(tmp_path), plate="p1", stack="s1")
    assert node.dataset.best_index in range(-4, 5)


@pytest.mark.parametrize("params, words", [
    ({"source": "dataset"}, "dataset parameter"),
    ({"source": "dataset", "dataset": "/nonexistent/ds"}, "/nonexistent/ds"),
    ({"switch_times_s": [1.0, 2.0], "switch_jumps_steps": [5.0]}, "same length"),
    ({"source": "tape"}, "source"),
    ({"fps": 0.0}, "fps"),
    ({"body_absorb_per_um": -0.5}, "body_absorb_per_um.*the look's value"),
    ({"um_per_px": 0.05}, "um_per_px.*the look's value"),
    ({"look": "glossy"}, "look"),
])
def test_bad_configuration_is_refused(params, words, ros_harness):
    with pytest.raises(ConfigError, match=words):
        ros_harness.start(StackPlayerNode, **{**SMALL, **params})


def test_look_renders_the_named_look(ros_harness):
    """look: the player's frame is that look's render (with its magnification parameter), not the default's."""
    player = ros_harness.start(StackPlayerNode, fps=1.0, seed=7, n_worms=1, look="real_adult", um_per_px=2.0,
                               band_limited_frame=False, **SMALL)

    def render(config: OpticsConfig) -> np.ndarray:
        scene = make_scene(np.random.default_rng(7), config, 1)
        shape = (SMALL["frame_height_px"], SMALL["frame_width_px"])
        return StackRenderer(scene, config, shape, seed=7).frame(30.0)

    frame = player.render(30.0)
    soft = replace(look_config("real_adult"), um_per_px=2.0, max_band_raster_px=0)
    assert np.array_equal(frame, render(soft))
    assert np.mean(np.abs(frame.astype(float) - render(replace(soft, **{
        k: getattr(OpticsConfig, k) for k in LOOKS["real_adult"]})))) > 1.0


def test_optics_parameters_override_the_look(ros_harness):
    """-1 (the default) keeps the look's absorption and magnification; a value overrides it, on any look.

    Without a look the player shows the simulator's (core.optics.SIMULATOR_LOOK).
    """
    def player(**params):
        return ros_harness.start(StackPlayerNode, fps=1.0, seed=7, n_worms=1, band_limited_frame=False,
                                 **{**SMALL, **params})

    look = look_config("real_adult")
    as_look = player(look="real_adult").render(30.0)
    overridden = player(look="real_adult", body_absorb_per_um=0.006).render(30.0)
    simulator_look = player(cuticle_absorb_per_um=0.2, um_per_px=2.0).render(30.0)

    def render(config: OpticsConfig) -> np.ndarray:
        scene = make_scene(np.random.default_rng(7), config, 1)
        return StackRenderer(scene, config, (SMALL["frame_height_px"], SMALL["frame_width_px"]), seed=7).frame(30.0)

    assert np.array_equal(as_look, render(replace(look, max_band_raster_px=0)))
    assert np.array_equal(overridden, render(replace(look, body_absorb_per_um=0.006, max_band_raster_px=0)))
    assert np.array_equal(simulator_look, render(replace(look_config(SIMULATOR_LOOK), cuticle_absorb_per_um=0.2,
                                                         um_per_px=2.0, max_band_raster_px=0)))
    assert not np.array_equal(as_look, overridden)


def test_dataset_without_best_index_says_to_label(tmp_path, ros_harness):
    write_stack(tmp_path, best_index=None)
    with pytest.raises(ConfigError, match="label"):
        ros_harness.start(StackPlayerNode, source="dataset", dataset=str(tmp_path))


# ---------------------------------------------------------------- clock = sim: lock-stepped with the pipeline

class LockStepRig(Rig):
    """The player as the simulation's clock; the probe plays the controller (lens position and answers)."""

    def __init__(self, harness, **params):
        super().__init__(harness, clock="sim", fps=10.0, **SMALL, **params)
        self.clock = harness.probe.collect("/clock", Clock)
        self.command_pub = harness.probe.publisher("focus/command", PointStamped)
        assert harness.wait_for_subscribers(self.joint_pub) and harness.wait_for_subscribers(self.command_pub)

    def lens_at(self, t_s: float, z_steps: float) -> None:
        self.joint_pub.publish(JointState(header=Header(stamp=s_to_stamp(t_s)), name=["focus"],
                                          position=[float(z_steps)]))

    def answer(self, t_s: float) -> None:
        self.command_pub.publish(PointStamped(header=Header(stamp=s_to_stamp(t_s))))


def test_sim_clock_advances_one_period_per_answered_frame(ros_harness):
    rig = LockStepRig(ros_harness, start_best_z_steps=50.0)
    assert ros_harness.spin_until(lambda: len(rig.clock) >= 1)
    assert stamp_to_s(rig.clock[0].clock) == pytest.approx(1.0)
    ros_harness.spin_for(0.3)
    assert rig.images == [] and len(rig.clock) == 1, "a frame before the lens position at t was known"

    rig.lens_at(0.5, 7.0)                      # an old position does not count
    ros_harness.spin_for(0.3)
    assert rig.images == []
    rig.lens_at(1.0, 7.0)
    assert ros_harness.spin_until(lambda: len(rig.truth) == 1)
    truth = rig.truth[0]
    assert stamp_to_s(truth.header.stamp) == pytest.approx(1.0)
    assert (truth.point.x, truth.point.y, truth.point.z) == (7.0, 50.0, 43.0)

    rig.answer(0.9)                            # an answer to another frame does not advance time
    ros_harness.spin_for(0.3)
    assert len(rig.clock) == 1
    rig.answer(1.0)
    assert ros_harness.spin_until(lambda: len(rig.clock) == 2)
    assert stamp_to_s(rig.clock[1].clock) == pytest.approx(1.1)   # one period at 10 fps, exactly
    rig.lens_at(1.1, 9.0)
    assert ros_harness.spin_until(lambda: len(rig.truth) == 2)
    assert stamp_to_s(rig.truth[1].header.stamp) == pytest.approx(1.1) and rig.truth[1].point.x == 9.0
    assert rig.node.frames_unanswered == 0


def test_sim_clock_drops_stamps_no_clock_makes(ros_harness):
    """A joint state or an answer stamped sec < 0 (rclpy's Time refuses it) is dropped, never a crash."""
    rig = LockStepRig(ros_harness)
    assert ros_harness.spin_until(lambda: len(rig.clock) >= 1)
    rig.node.get_logger().set_level(40)
    bad = Header()
    bad.stamp.sec = -1
    rig.joint_pub.publish(JointState(header=bad, name=["focus"], position=[5.0]))
    ros_harness.spin_for(0.3)
    assert rig.images == [] and rig.node.lens_z_steps == 0.0
    rig.lens_at(1.0, 7.0)
    assert ros_harness.spin_until(lambda: len(rig.truth) == 1) and rig.truth[0].point.x == 7.0
    rig.command_pub.publish(PointStamped(header=bad))  # while the frame awaits its answer
    ros_harness.spin_for(0.3)
    assert len(rig.clock) == 1 and rig.node.lockstep.state == "awaiting_answer"
    rig.answer(1.0)
    assert ros_harness.spin_until(lambda: len(rig.clock) == 2)


def test_sim_clock_moves_on_after_the_timeout_and_counts_it(ros_harness):
    rig = LockStepRig(ros_harness, lockstep_timeout_s=0.3)
    assert ros_harness.spin_until(lambda: len(rig.clock) >= 1)
    # no lens position: after the timeout the frame is shown at the last known z; no answer: time moves on
    assert ros_harness.spin_until(lambda: len(rig.clock) >= 2, timeout_s=15)
    assert len(rig.truth) == 1 and rig.truth[0].point.x == 0.0
    assert rig.node.frames_unanswered == 1
    assert stamp_to_s(rig.clock[1].clock) == pytest.approx(1.1)


def test_band_limited_frame_selects_the_faithful_field_grid(ros_harness):
    """The player's default 648x486 frame: the band-limited grid (the default), the old 2x grid when asked."""
    grids = {}
    for band in (False, True):
        node = ros_harness.start(StackPlayerNode, fps=1.0, band_limited_frame=band)
        grids[band] = node.render.__self__.dx_um
    look = look_config(SIMULATOR_LOOK)  # the player's default look
    limit_um = look.wavelength_um / (2 * (look.na + look.condenser_na))
    assert grids[True] < limit_um < grids[False]
