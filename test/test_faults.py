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

"""Faults injected into a running graph of real rclpy nodes, most as processes as `ros2 run` starts them.

The motor never moves on a stale or garbage prediction, and the loop closes again once the fault is gone.

The serial-port fault (GRBL on a pty lost mid-move) is in test_controller_node.py, beside the other GRBL tests.
"""
from __future__ import annotations

import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from celegans_autofocus import recording as rec
from celegans_autofocus.nodes.common import array_to_image, s_to_stamp, stamp_to_s
from onnx_models import constant_model

FPS = 15.0
STALE_AFTER_S = 0.5
CONTROLLER = ("-p", f"stale_after_s:={STALE_AFTER_S}", "-p", "diagnostics_period_s:=0.1", "-p",
              "soft_max_steps:=1000000", "-p", "max_speed_steps_per_s:=100000.0")


class Procs:
    """Node processes of one test, each logging to a file (never a pipe a chatty node could fill)."""

    def __init__(self, tmp_path, namespace: str):
        self.tmp_path, self.namespace = tmp_path, namespace
        self.running: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, object] = {}

    def start(self, name: str, node: str, *ros_args: str, preexec_fn=None) -> subprocess.Popen:
        env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
        log = open(self.tmp_path / f"{name}.{len(self.logs)}.log", "w+")
        self.logs[name] = log
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", f"celegans_autofocus.nodes.{node}", "--ros-args", "-r",
             f"__ns:={self.namespace}", *ros_args], env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
            preexec_fn=preexec_fn)
        return self.running[name]

    def output(self, name: str) -> str:
        self.logs[name].seek(0)
        return self.logs[name].read()

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.output(name)[-3000:]}"

    def stop(self, name: str, timeout_s: float = 20.0) -> int:
        proc = self.running[name]
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=timeout_s)

    def close(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for log in self.logs.values():
            log.close()


@pytest.fixture
def procs(ros_harness, tmp_path):
    p = Procs(tmp_path, ros_harness.namespace)
    yield p
    p.close()


class Loop:
    """The probe's side of predictor -> controller.

    It is the camera (160x120 frames stamped now) and it records every focus/command (with its receipt
    time), joint state and controller diagnostic.
    """

    def __init__(self, harness, procs: Procs):
        self.h, self.procs = harness, procs
        probe = harness.probe
        self.image_pub = probe.publisher("camera/image_raw", Image)
        self.commands: list[tuple[float, PointStamped]] = []    # (wall receipt s, command)
        probe.create_subscription(PointStamped, "focus/command", lambda m: self.commands.append((time.time(), m)),
                                  10)
        self.joints = probe.collect("stepper/joint_states", JointState)
        self.diagnostics: list[tuple[float, DiagnosticStatus]] = []
        # diagnostic_updater (where installed) may name the status by the node's name without its namespace
        probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.diagnostics.extend(
            (time.time(), s) for s in m.status if s.name.endswith("stepper_controller_node: focus stepper")), 10)
        self.frames: list[float] = []                           # stamps of the frames published
        self.image = (np.arange(160 * 120, dtype=np.uint32).reshape(120, 160) % 251).astype(np.uint8)

    def run(self, seconds: float, frames: bool = True) -> None:
        """Spin for ``seconds``, publishing a frame every 1/FPS s when ``frames``; every node must stay up."""
        end, next_frame = time.monotonic() + seconds, time.monotonic()
        while time.monotonic() < end:
            if frames and time.monotonic() >= next_frame:
                msg = array_to_image(self.image, "mono8", frame_id="camera")
                now = time.time()
                msg.header.stamp = s_to_stamp(now)
                self.image_pub.publish(msg)
                self.frames.append(now)
                next_frame += 1.0 / FPS
            self.h.executor.spin_once(timeout_sec=0.005)
        self.procs.check_alive()

    def wait_for_moves(self, timeout_s: float = 60.0) -> None:
        """Publish frames until the controller has moved the motor (the loop is closed)."""
        end = time.monotonic() + timeout_s
        while not self.moves() and time.monotonic() < end:
            self.run(0.2)
        assert self.moves(), f"no move in {timeout_s} s: controller\n{self.procs.output('controller')[-2000:]}"

    def moves(self, since_s: float = 0.0) -> list[tuple[float, PointStamped]]:
        return [(t, c) for t, c in self.commands if c.point.z != 0 and t >= since_s]

    def assert_no_move_on_stale(self) -> None:
        """Every move was commanded for a frame younger than the watchdog's limit when the command came."""
        for t, c in self.moves():
            assert t - stamp_to_s(c.header.stamp) < STALE_AFTER_S, (t, stamp_to_s(c.header.stamp))


def start_loop(harness, procs: Procs, tmp_path) -> Loop:
    """Start the predictor (a model saying 'focus is 60 steps up' for every frame) and the controller."""
    loop = Loop(harness, procs)
    model = constant_model(tmp_path / "plus60.onnx", 60.0, input_px=32)
    procs.start("controller", "stepper_controller_node", *CONTROLLER)
    loop.model = model
    procs.start("predictor", "focus_predictor_node", "-p", f"model_path:={model}", "-p", "intra_op_threads:=1")
    assert harness.wait_for_subscribers(loop.image_pub, timeout_s=60), procs.output("predictor")
    loop.wait_for_moves()
    return loop


def test_camera_stall_holds_reports_stale_and_focus_resumes(ros_harness, procs, tmp_path):
    loop = start_loop(ros_harness, procs, tmp_path)
    loop.run(2.0)
    stall_s = time.time()
    loop.run(2.0, frames=False)                                   # the camera stalls for 2 s
    resume_s = time.time()
    # from the watchdog's limit on, any move would act on a stale prediction
    held_s = stall_s + STALE_AFTER_S
    position_in_stall = {j.position[0] for j in loop.joints if held_s < stamp_to_s(j.header.stamp) < resume_s}
    loop.run(3.0)

    assert len(position_in_stall) == 1, position_in_stall       # the motor stood still
    assert not [c for t, c in loop.moves(held_s) if t < resume_s]
    stale = [s for t, s in loop.diagnostics if stall_s < t < resume_s and "watchdog" in s.message]
    assert stale and stale[-1].level == DiagnosticStatus.WARN, [s.message for _, s in loop.diagnostics][-5:]
    loop.assert_no_move_on_stale()
    # recovery: the first frame after the stall whose answer is a move (N, counted in frames)
    after = [f for f in loop.frames if f >= resume_s]
    first_move = min(stamp_to_s(c.header.stamp) for _, c in loop.moves(resume_s))
    n_frames = after.index(min(after, key=lambda f: abs(f - first_move))) + 1
    print(f"camera stall: focus resumed on frame {n_frames} after the frames came back")
    assert n_frames <= 3
    assert any(s.level == DiagnosticStatus.OK for t, s in loop.diagnostics if t > resume_s + 0.5)


def test_predictor_crash_and_respawn_the_watchdog_holds_then_the_loop_closes_again(ros_harness, procs, tmp_path):
    loop = start_loop(ros_harness, procs, tmp_path)
    loop.run(1.0)
    procs.running.pop("predictor").send_signal(signal.SIGKILL)    # the predictor crashes
    crash_s = time.time()
    loop.run(2.0)                                                 # frames keep coming, nobody predicts
    respawn_s = time.time()
    held_s = crash_s + STALE_AFTER_S
    position_down = {j.position[0] for j in loop.joints if held_s < stamp_to_s(j.header.stamp) < respawn_s}
    assert len(position_down) == 1, position_down
    assert not loop.moves(held_s)
    stale = [s for t, s in loop.diagnostics if crash_s < t < respawn_s and "watchdog" in s.message]
    assert stale and stale[-1].level == DiagnosticStatus.WARN

    # launch's respawn=True: the same command again
    procs.start("predictor", "focus_predictor_node", "-p", f"model_path:={loop.model}", "-p", "intra_op_threads:=1")
    end = time.monotonic() + 60
    while not loop.moves(respawn_s) and time.monotonic() < end:
        loop.run(0.2)
    assert loop.moves(respawn_s), procs.output("predictor")[-2000:]
    print(f"predictor respawn: first move {loop.moves(respawn_s)[0][0] - respawn_s:.1f} s after the restart")
    loop.assert_no_move_on_stale()


class LifecycleClient:
    """A node's lifecycle services, called through the probe (what `ros2 lifecycle set` does)."""

    def __init__(self, harness, node_name: str):
        self.h = harness
        self.change = harness.probe.create_client(ChangeState, f"{node_name}/change_state")
        assert self.change.wait_for_service(timeout_sec=30)

    def set(self, transition_id: int) -> bool:
        future = self.change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        assert self.h.spin_until(future.done, timeout_s=30), "lifecycle service did not answer"
        return future.result().success


def test_model_file_replaced_while_running_keeps_the_loaded_model_and_a_reload_or_restart_refuses(
        ros_harness, procs, tmp_path):
    """The model file is overwritten with garbage under a running predictor.

    The file is read once, at configure: the running node keeps predicting with the model it loaded; the
    ``~/reload_model`` service refuses the corrupt file and keeps that model serving. A lifecycle reload
    (cleanup + configure) is refused and leaves the node unconfigured, without a model and silent
    (the controller's watchdog holds); with a good file back, configure + activate resume. A restart with the
    corrupt file exits with code 2 and one FATAL line naming the file.
    """
    model = constant_model(tmp_path / "model.onnx", 60.0, input_px=32)
    good = model.read_bytes()
    loop = Loop(ros_harness, procs)
    offsets = ros_harness.probe.collect("focus/offset", PointStamped)
    procs.start("predictor", "focus_predictor_node", "-p", f"model_path:={model}", "-p", "intra_op_threads:=1")
    assert ros_harness.wait_for_subscribers(loop.image_pub, timeout_s=60), procs.output("predictor")
    end = time.monotonic() + 60
    while not offsets and time.monotonic() < end:
        loop.run(0.2)
    assert offsets, procs.output("predictor")[-2000:]
    with open(model, "r+b") as f:                                 # overwritten in place with garbage
        f.write(b"\x00garbage" * (len(good) // 8))
    n = len(offsets)
    loop.run(1.5)
    assert len(offsets) > n + 10
    assert all(o.point.z == pytest.approx(60.0) for o in offsets)  # still the model it loaded

    reload = ros_harness.probe.create_client(Trigger, f"{ros_harness.namespace}/focus_predictor_node/reload_model")
    assert reload.wait_for_service(timeout_sec=30)
    future = reload.call_async(Trigger.Request())                 # a reload while running is refused ...
    assert ros_harness.spin_until(future.done, timeout_s=30)
    assert not future.result().success and "loaded model is kept" in future.result().message
    assert str(model) in future.result().message
    n = len(offsets)
    loop.run(1.5)
    assert len(offsets) > n + 10                                  # ... and the old model keeps serving
    assert all(o.point.z == pytest.approx(60.0) for o in offsets)

    life = LifecycleClient(ros_harness, f"{ros_harness.namespace}/focus_predictor_node")
    assert life.set(Transition.TRANSITION_DEACTIVATE) and life.set(Transition.TRANSITION_CLEANUP)
    assert not life.set(Transition.TRANSITION_CONFIGURE)          # the reload is refused ...
    refused = [line for line in procs.output("predictor").splitlines() if "configure failed" in line]
    assert len(refused) == 1 and str(model) in refused[0], procs.output("predictor")[-2000:]
    loop.run(0.5)
    n = len(offsets)
    loop.run(1.0)
    assert len(offsets) == n                                      # ... and leaves no model: nothing predicted
    model.write_bytes(good)
    assert life.set(Transition.TRANSITION_CONFIGURE) and life.set(Transition.TRANSITION_ACTIVATE)
    assert ros_harness.wait_for_subscribers(loop.image_pub, timeout_s=30)
    loop.run(1.5)
    assert len(offsets) > n and all(o.point.z == pytest.approx(60.0) for o in offsets)
    assert procs.stop("predictor") == 0

    model.write_bytes(b"\x00garbage" * (len(good) // 8))
    again = procs.start("predictor2", "focus_predictor_node", "-p", f"model_path:={model}")
    assert again.wait(timeout=60) == 2
    out = procs.output("predictor2")
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and str(model) in fatal[0] and "Traceback" not in out, out


def _file_size_limit(limit_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write past the limit fails with EFBIG, no signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.parametrize("fault", ["disk_full", "directory_removed"])
def test_bag_recorder_out_of_room_or_removed_stops_with_a_reason_and_the_pipeline_runs_on(
        ros_harness, procs, tmp_path, fault):
    """Bag recorder: a full disk or its directory removed.

    Disk full: a 4 MB file size limit on the recorder's process (RLIMIT_FSIZE, SIGXFSZ ignored) stands in
    for a full disk; the bag written so far is closed and readable with rosbags. Directory removed: the
    recorder says so; there is nothing left to read.
    """
    loop = start_loop(ros_harness, procs, tmp_path)
    loop.image = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)   # 300 kB a frame
    bag = tmp_path / "bag"
    procs.start("recorder", "bag_recorder_node", "-p", f"bag_path:={bag}", "-p", "min_free_mb:=1.0",
                "-p", "topics:=[camera/image_raw, focus/offset]", "-p", "discovery_period_s:=0.1",
                preexec_fn=_file_size_limit(4 * 2**20) if fault == "disk_full" else None)
    end = time.monotonic() + 30
    while "subscribed to" not in procs.output("recorder") and time.monotonic() < end:
        loop.run(0.2)
    loop.run(1.0)
    if fault == "directory_removed":
        shutil.rmtree(bag)
    loop.run(4.0)
    out = procs.output("recorder")
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "recording stopped after" in errors[0], out
    stopped_s = time.time()
    loop.run(1.5)                                      # the recorder lives on; the loop keeps running
    procs.check_alive()
    assert loop.moves(stopped_s)
    assert procs.stop("recorder") == 0, procs.output("recorder")
    assert "Traceback" not in procs.output("recorder")
    if fault == "directory_removed":
        assert "was removed while recording" in errors[0] and not bag.exists()
        return
    assert "out of room" in errors[0] and "the bag was closed and is readable" in errors[0]
    written = int(errors[0].split("recording stopped after ")[1].split()[0])
    with rec.BagReader(bag) as reader:                 # rosbags' AnyReader underneath
        msgs = list(reader.messages(list(reader.topics)))
    assert len(msgs) == written > 3
    images = [rec.image_from_msg(m, t) for _, t, _, m in msgs if t == rec.IMAGE_TYPE]
    assert images and all(np.array_equal(i, loop.image) for i in images)
    assert sum(p.stat().st_size for p in bag.iterdir()) <= 4 * 2**20


def test_clock_jumping_back_in_sim_time_moves_nothing_and_crashes_nothing(ros_harness, tmp_path):
    """Sim time jumps back 2 s.

    Player (wall mode, following /clock), predictor and controller on the simulated clock; the test
    publishes /clock and sends it 2 s back. The controller holds every frame stamped before the latest time
    it has acted at (they look stale), then acts again once sim time has passed it; the player keeps
    publishing frames stamped with the new (earlier) time.
    """
    from celegans_autofocus.nodes.focus_predictor_node import FocusPredictorNode
    from celegans_autofocus.nodes.stack_player_node import StackPlayerNode
    from celegans_autofocus.nodes.stepper_controller_node import StepperControllerNode

    model = constant_model(tmp_path / "plus60.onnx", 60.0, input_px=32)
    h = ros_harness
    player = h.start(StackPlayerNode, use_sim_time=True, fps=10.0, frame_width_px=160, frame_height_px=120)
    h.start(FocusPredictorNode, use_sim_time=True, model_path=str(model), intra_op_threads=1)
    controller = h.start(StepperControllerNode, use_sim_time=True, stale_after_s=STALE_AFTER_S,
                         soft_max_steps=1000000, max_speed_steps_per_s=100000.0)
    commands = h.probe.collect("focus/command", PointStamped)
    truth = h.probe.collect("sim/ground_truth", PointStamped)
    clock_pub = h.probe.publisher("/clock", Clock)
    assert h.wait_for_subscribers(clock_pub, count=3)

    def run_clock(start_s: float, seconds: float) -> None:
        t = start_s
        while t < start_s + seconds:
            clock_pub.publish(Clock(clock=s_to_stamp(t)))
            h.spin_for(0.02)
            t += 0.02

    run_clock(10.0, 3.0)
    assert any(c.point.z != 0 for c in commands), "the loop never closed before the jump"
    settled = time.monotonic() + 10.0  # the clock stands still: let the frames in flight be answered first
    while time.monotonic() < settled:
        n = len(commands)
        h.spin_for(0.5)
        if len(commands) == n:
            break
    n_commands, n_truth, moves_before = len(commands), len(truth), controller.moves
    run_clock(11.0, 1.5)                              # back 2 s: 11.0 .. 12.5, all before the last decision
    after_jump = commands[n_commands:]
    assert after_jump and all(c.point.z == 0 for c in after_jump)          # answered, never a move
    assert controller.moves == moves_before
    assert controller.controller.counts["stale"] > 0
    assert len(truth) > n_truth and min(stamp_to_s(t.header.stamp) for t in truth[n_truth:]) < 12.5
    run_clock(12.5, 3.0)                              # sim time passes the old time: focus acts again
    assert controller.moves > moves_before
    assert player.frames_published > 0 and math.isfinite(controller.stepper.position_steps)
