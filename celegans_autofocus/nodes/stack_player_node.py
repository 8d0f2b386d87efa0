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

"""stack_player_node: a simulated camera that shows the specimen at the focus motor's current z.

Subscribes ``stepper/joint_states`` (position in motor steps) and publishes, at ``fps``,
``camera/image_raw`` and ``sim/ground_truth`` (geometry_msgs/PointStamped with the image's header:
z = true offset_steps = best_z - lens_z, x = lens_z_steps, y = best_z_steps).

Sources: ``synthetic`` renders the scene live (core.optics.StackRenderer, ``frame_width_px`` x
``frame_height_px`` covering the full field); ``dataset`` plays a written stack (the dataset layout),
showing the z image whose offset (best_index - z_index) is nearest the true offset.
The best plane moves with time as core.closed_loop.FocusDrift says: plate tilt while the worm
crawls (``drift_steps_per_s``), a random walk, and jumps at ``switch_times_s`` (target switched to
another worm).

``clock``: ``wall`` publishes a frame every 1/``fps`` s of the node clock (real time). ``sim`` makes the
player the simulation's clock, lock-stepped with the pipeline: it publishes ``/clock`` (run the other
nodes with ``use_sim_time``), shows the frame at the lens z the controller reports for that time, and
advances one frame period only when the controller has answered the frame on ``focus/command`` (the
predictor answers every frame it takes, NaN when it cannot predict). So the episode is the same on a
fast or a loaded machine. A frame unanswered after ``lockstep_timeout_s`` of wall time (a node missing
or stalled) is counted in ``frames_unanswered`` and time moves on.
"""
from __future__ import annotations

import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.time import Time
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState

from ..core.closed_loop import FocusDrift
from ..core.dataset.errors import DatasetError
from ..core.dataset.io import read_image
from ..core.dataset.labels import LABELS_FILE, best_index, read_dataset_labels
from ..core.dataset.layout import Stack, discover
from ..core.images import ImageError
from ..core.optics import LOOKS, SIMULATOR_LOOK, OpticsConfig, StackRenderer, look_config, make_scene
from ..core.sensor import FULL_FRAME_WH_PX
from .common import (ConfigError, Param, array_to_image, declare_params, reliable_qos, run_node, sensor_qos,
                     stamp_ns, with_image_qos_overrides)


#: synthetic: the optics are rendered at the offset rounded to this (at most 0.125 step = 0.6 um off, < 0.4 % RMS of a
#: crop; the depth of field is ~16 steps), so while the lens holds only the camera noise is drawn anew per frame
OFFSET_QUANTUM_STEPS = 0.25


#: synthetic: a frame farther from focus is rendered at this offset (5 mm: a featureless blur whose render costs
#: seconds per frame and grows with the offset; the truth keeps the real offset)
MAX_RENDER_OFFSET_STEPS = 1000.0

#: lens positions beyond this are no positions (the range of initial_z_steps and start_best_z_steps)
MAX_Z_STEPS = 1e6


#: synthetic: an optics parameter at this value takes the look's value
LOOK_VALUE = -1.0


def _finite(values) -> str | None:
    return None if np.all(np.isfinite(np.asarray(values, dtype=float))) else "values must be finite"


def _look_or_at_least(minimum: float):
    """Return the check of an optics parameter that overrides the look: LOOK_VALUE, or at least ``minimum``."""
    def check(value: float) -> str | None:
        return None if value == LOOK_VALUE or value >= minimum else \
            f"must be {LOOK_VALUE:g} (the look's value) or >= {minimum:g}"
    return check


#: synthetic optics parameters that override the look unless they are LOOK_VALUE
LOOK_OVERRIDES = ("um_per_px", "body_absorb_per_um", "cuticle_absorb_per_um")


PARAMS = (
    Param("source", "synthetic", "synthetic: live renderer; dataset: a written stack", read_only=True,
          choices=("synthetic", "dataset")),
    Param("dataset", "", "dataset: DATASET directory (plates/<plate>/<stack>/z_<index>.png)", read_only=True),
    Param("plate", "", "dataset: plate id ('' = the first plate)", read_only=True),
    Param("stack", "", "dataset: stack id ('' = the first stack of the plate)", read_only=True),
    Param("seed", 0, "synthetic: scene and noise seed", range=(0, 2**31 - 1), read_only=True),
    Param("n_worms", 3, "synthetic: worms on the plate", range=(1, 50), read_only=True),
    Param("frame_width_px", 648, "synthetic: published frame width (the full field, downscaled; config/sim.yaml's is "
          "3/4 of the sensor's, as the hybrid's focus measure needs on the simulator's soft look)",
          range=(32, FULL_FRAME_WH_PX[0]), read_only=True),
    Param("frame_height_px", 486, "synthetic: published frame height", range=(24, FULL_FRAME_WH_PX[1]), read_only=True),
    Param("band_limited_frame", True, "synthetic: propagate the field on a grid that holds the objective's band "
          "(crops within 0.05 RMS of a native render, as the bundled model was trained; about 2x the render time); "
          "false: the old 2x grid (crops 0.14-0.16 RMS off)", read_only=True),
    Param("look", SIMULATOR_LOOK, "synthetic: the specimen and camera look (core.optics.LOOKS; real_adult: fitted to "
          "real in-focus adults, a soft lens; real_adult_mottled: with the mottle of real plates' backgrounds; "
          "default: the look of the bundled model's first stages); um_per_px, body_absorb_per_um and "
          "cuticle_absorb_per_um override it",
          choices=tuple(LOOKS), read_only=True),
    Param("um_per_px", LOOK_VALUE, "synthetic: specimen-plane pixel size of the full frame (another magnification); "
          f"{LOOK_VALUE:g} = the look's (every look: {OpticsConfig.um_per_px}, the bundled model's training optics)",
          range=(LOOK_VALUE, 100.0), check=_look_or_at_least(0.1), read_only=True),
    Param("body_absorb_per_um", LOOK_VALUE, "synthetic: the worm body's amplitude absorption per um of chord; "
          f"{LOOK_VALUE:g} = the look's (the simulator's: {look_config(SIMULATOR_LOOK).body_absorb_per_um})",
          range=(LOOK_VALUE, 1.0),
          check=_look_or_at_least(0.0), read_only=True),
    Param("cuticle_absorb_per_um", LOOK_VALUE, "synthetic: the cuticle shell's extra absorption per um; "
          f"{LOOK_VALUE:g} = the look's (the simulator's: {look_config(SIMULATOR_LOOK).cuticle_absorb_per_um})",
          range=(LOOK_VALUE, 10.0),
          check=_look_or_at_least(0.0), read_only=True),
    Param("fps", 15.0, "frames per second (of the node clock, or of /clock when clock = sim)", range=(0.1, 200.0)),
    Param("clock", "wall", "wall: frames in real time on the node clock; sim: publish /clock, lock-stepped with "
          "the pipeline (one frame period per answered frame)", choices=("wall", "sim"), read_only=True),
    Param("max_frames", 0, "stop after this many frames (with clock = sim: once the last one is answered, "
          "and time stands still); 0 = until stopped", range=(0, 2**31 - 1), read_only=True),
    Param("lockstep_timeout_s", 5.0, "clock sim: wall seconds to wait for the lens position or the answer to a "
          "frame before time moves on without it", range=(0.01, 3600.0), read_only=True),
    Param("frame_id", "camera_optical_frame", "header.frame_id of the images"),
    Param("joint_name", "", "joint of stepper/joint_states that is the focus motor ('' = the first)"),
    Param("initial_z_steps", 0.0, "lens z until the first joint_states arrives", range=(-MAX_Z_STEPS, MAX_Z_STEPS)),
    Param("start_best_z_steps", 0.0, "best-focus z at t = 0 (the start offset when the lens starts at 0)",
          range=(-MAX_Z_STEPS, MAX_Z_STEPS), read_only=True),
    Param("drift_steps_per_s", 0.0, "plate tilt: best-plane drift while the worm crawls",
          range=(-1000.0, 1000.0), read_only=True),
    Param("random_walk_steps_per_sqrt_s", 0.0, "random walk of the best plane", range=(0.0, 1000.0),
          read_only=True),
    Param("switch_times_s", [], "times the target switches to another worm", array_type=float,
          check=_finite, read_only=True),
    Param("switch_jumps_steps", [], "best-plane jump at each switch time", array_type=float, check=_finite,
          read_only=True),
)


class DatasetStack:
    """One written stack as a function offset_steps -> image (nearest z whose offset matches)."""

    def __init__(self, stack: Stack, best_index: int):
        self.stack, self.best_index = stack, best_index
        self.z_steps = np.array(stack.z_steps)
        self.read = lru_cache(maxsize=32)(self._read)

    def _read(self, z: int) -> np.ndarray:
        return read_image(self.stack.files[z])

    def z_for(self, offset_steps: float) -> int:
        """Return the z index whose offset (best_index - z) is nearest ``offset_steps`` (clamped to the stack)."""
        return int(self.z_steps[np.argmin(np.abs(self.z_steps - (self.best_index - offset_steps)))])

    def frame(self, offset_steps: float) -> np.ndarray:
        """Return the image nearest ``offset_steps``.

        An unreadable file raises ImageError (naming it) once and is dropped from the stack, so the next
        frame shows the next nearest z.
        """
        z = self.z_for(offset_steps)
        try:
            return self.read(z)
        except ImageError:
            if self.z_steps.size > 1:
                self.z_steps = self.z_steps[self.z_steps != z]
            raise

    def covers(self, offset_steps: float) -> bool:
        z = self.best_index - offset_steps
        return bool(self.z_steps[0] - 1 <= z <= self.z_steps[-1] + 1)


def load_dataset_stack(dataset: str, plate: str, stack: str) -> DatasetStack:
    """Find the chosen stack and its best index (stack.yaml true_best_index/best_index, else labels.csv)."""
    try:
        found = discover(Path(dataset))
    except DatasetError as exc:
        raise ConfigError(str(exc)) from None
    candidates = [s for s in found.stacks if (not plate or s.plate == plate) and (not stack or s.name == stack)]
    if not candidates:
        failed = found.failed.get((plate, stack))
        raise ConfigError(failed or f"no stack plate={plate or '*'!r} stack={stack or '*'!r} in {dataset}")
    chosen = candidates[0]
    best = best_index(chosen.meta)
    if best is None:  # labels.csv is read only when stack.yaml does not say
        try:
            best = best_index(chosen.meta, chosen.key, read_dataset_labels(Path(dataset)))
        except DatasetError as exc:
            raise ConfigError(str(exc)) from None
    if best is None:
        raise ConfigError(f"{chosen.path}: no best_index in stack.yaml and no rows in {Path(dataset) / LABELS_FILE}; "
                          "run `celegans-autofocus label` first")
    return DatasetStack(chosen, best.z_index)


class StackPlayerNode(Node):
    NODE_NAME = "stack_player_node"

    def __init__(self, **kwargs):
        super().__init__(self.NODE_NAME, **kwargs)
        self.params = declare_params(self, PARAMS)
        p = self.params
        try:
            self.drift = FocusDrift(p.start_best_z_steps, p.drift_steps_per_s, p.random_walk_steps_per_sqrt_s,
                                    p.switch_times_s, p.switch_jumps_steps, seed=p.seed)
        except ValueError as exc:
            raise ConfigError(f"best-plane drift: {exc}") from None
        if p.source == "dataset":
            if not p.dataset:
                raise ConfigError("source 'dataset' needs the dataset parameter (a DATASET directory)")
            self.dataset = load_dataset_stack(p.dataset, p.plate, p.stack)
            self.render = self.dataset.frame
            described = f"stack {self.dataset.stack.path} (best_index {self.dataset.best_index})"
        else:
            self.dataset = None
            overrides = {name: p[name] for name in LOOK_OVERRIDES if p[name] != LOOK_VALUE}
            config = replace(look_config(p.look), **overrides,
                             **({} if p.band_limited_frame else {"max_band_raster_px": 0}))
            scene = make_scene(np.random.default_rng(p.seed), config, p.n_worms)
            renderer = StackRenderer(scene, config, (p.frame_height_px, p.frame_width_px), seed=p.seed,
                                     offset_quantum_steps=OFFSET_QUANTUM_STEPS)
            self.render = renderer.frame
            described = f"synthetic scene seed {p.seed}, {p.frame_width_px}x{p.frame_height_px}"
        self.lens_z_steps = float(p.initial_z_steps)
        self.t0: Time | None = None
        self.frames_published = 0
        self.frames_unanswered = 0
        self.frames_skipped = 0  # could not be rendered (dataset source: unreadable image)
        self.image_pub = with_image_qos_overrides(self.create_publisher, Image, "camera/image_raw",
                                                  reliable_qos(depth=2))
        self.truth_pub = self.create_publisher(PointStamped, "sim/ground_truth", reliable_qos())
        # Own callback group: under a multi-threaded executor the lens position keeps arriving while a
        # slow render runs (an overdue timer would otherwise starve it in a shared group).
        self.create_subscription(JointState, "stepper/joint_states", self._on_joint_state, sensor_qos(depth=1),
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.lockstep = LockStep(self, p.fps, p.lockstep_timeout_s) if p.clock == "sim" else None
        if self.lockstep is None:
            self.timer = self.create_timer(1.0 / p.fps, self._on_timer)
        self.params.on_change(self._on_params)
        self.get_logger().info(f"playing {described} at {p.fps:g} fps on the {p.clock} clock")

    def _on_params(self, changed: dict) -> None:
        if "fps" in changed:
            if self.lockstep is None:
                self.timer.timer_period_ns = int(1e9 / changed["fps"])
            else:
                self.lockstep.period_ns = int(round(1e9 / changed["fps"]))

    def _on_joint_state(self, msg: JointState) -> None:
        name = self.params.joint_name
        if name and name in msg.name:
            index = list(msg.name).index(name)
        elif not name and len(msg.position) > 0:
            index = 0
        else:
            self.get_logger().warning(f"joint_states without joint {name or '#0'!r}; lens z unchanged",
                                      throttle_duration_sec=5.0)
            return
        if index >= len(msg.position) or not abs(msg.position[index]) <= MAX_Z_STEPS:
            self.get_logger().warning(f"joint_states without a finite position within +-{MAX_Z_STEPS:g} steps; "
                                      "lens z unchanged", throttle_duration_sec=5.0)
            return
        ns = stamp_ns(msg.header.stamp)
        if self.lockstep is not None and ns is None:
            self.get_logger().warning("joint_states with a malformed header stamp; lens z unchanged",
                                      throttle_duration_sec=5.0)
            return
        self.lens_z_steps = float(msg.position[index])
        if self.lockstep is not None:
            self.lockstep.on_lens(ns)

    @property
    def done(self) -> bool:
        """All ``max_frames`` frames are out (and, on the simulated clock, answered)."""
        limit = self.params.max_frames
        if self.lockstep is not None:
            return self.lockstep.state == "done"
        return bool(limit) and self.frames_published >= limit

    def _on_timer(self) -> None:
        if not self.done:
            self.publish_frame(self.get_clock().now())

    def publish_frame(self, now: Time) -> bool:
        """Render and publish the frame (and its ground truth) taken at ``now`` with the current lens z.

        False when the frame could not be rendered (logged).
        """
        if self.t0 is None:
            self.t0 = now
        t_s = (now - self.t0).nanoseconds * 1e-9
        best_z_steps = self.drift.best_z_steps(t_s)
        offset_steps = best_z_steps - self.lens_z_steps
        try:
            image = self.render(offset_steps if self.dataset is not None  # a stack shows its end beyond its range
                                else float(np.clip(offset_steps, -MAX_RENDER_OFFSET_STEPS, MAX_RENDER_OFFSET_STEPS)))
        except ImageError as exc:
            self.frames_skipped += 1
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=2.0)
            return False
        if self.dataset is not None and not self.dataset.covers(offset_steps):
            self.get_logger().warning(f"offset {offset_steps:.0f} steps is outside the stack; showing its end",
                                      throttle_duration_sec=5.0)
        msg = array_to_image(image, frame_id=self.params.frame_id)
        msg.header.stamp = now.to_msg()
        truth = PointStamped(header=msg.header)
        truth.point.x, truth.point.y, truth.point.z = self.lens_z_steps, best_z_steps, offset_steps
        self.image_pub.publish(msg)
        self.truth_pub.publish(truth)
        self.frames_published += 1
        return True


class LockStep:
    """The simulated clock of a :class:`StackPlayerNode`.

    Publish ``/clock`` = t, wait for the lens position at t (``stepper/joint_states`` stamped >= t), show
    the frame, wait for the controller's answer to it (``focus/command`` with the frame's stamp), advance
    t by one frame period, and so on.
    """

    START_NS = 1_000_000_000  # the first frame at 1 s: a zero stamp means "no time" to many ROS tools

    def __init__(self, player: StackPlayerNode, fps: float, timeout_s: float):
        self.player = player
        self.period_ns = int(round(1e9 / fps))
        self.timeout_s = timeout_s
        self.t_ns = self.START_NS
        self.state = "starting"   # -> awaiting_lens -> awaiting_answer -> awaiting_lens ...
        self._since_s = time.monotonic()
        self.clock_pub = player.create_publisher(ClockMsg, "/clock", reliable_qos(depth=1))
        player.create_subscription(PointStamped, "focus/command", self._on_command, reliable_qos(depth=10))
        # wall time: starts the episode, and moves on when a node does not answer
        player.create_timer(0.05, self._on_watchdog, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _enter(self, state: str) -> None:
        self.state, self._since_s = state, time.monotonic()

    def _publish_clock(self) -> None:
        self.clock_pub.publish(ClockMsg(clock=Time(nanoseconds=self.t_ns).to_msg()))
        self._enter("awaiting_lens")

    def _show_frame(self) -> None:
        self._enter("awaiting_answer")
        if not self.player.publish_frame(Time(nanoseconds=self.t_ns)):
            self._advance()  # nothing shown, nothing to answer

    def _advance(self) -> None:
        limit = self.player.params.max_frames
        if limit and self.player.frames_published + self.player.frames_skipped >= limit:
            self._enter("done")
            return
        self.t_ns += self.period_ns
        self._publish_clock()

    def on_lens(self, stamp_ns: int) -> None:
        if self.state == "awaiting_lens" and stamp_ns >= self.t_ns:
            self._show_frame()

    def _on_command(self, msg: PointStamped) -> None:
        if self.state == "awaiting_answer" and stamp_ns(msg.header.stamp) == self.t_ns:
            self._advance()

    def _on_watchdog(self) -> None:
        if self.state == "starting":
            self._publish_clock()
        elif self.state != "done" and time.monotonic() - self._since_s > self.timeout_s:
            what = "lens position" if self.state == "awaiting_lens" else "answer to the frame"
            self.player.get_logger().warning(f"simulated clock: no {what} at t = {self.t_ns * 1e-9:.3f} s "
                                             f"after {self.timeout_s:g} s; moving on", throttle_duration_sec=5.0)
            if self.state == "awaiting_lens":
                self._show_frame()
            else:
                self.player.frames_unanswered += 1
                self._advance()


def main(args: list[str] | None = None) -> int:
    return run_node(StackPlayerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
