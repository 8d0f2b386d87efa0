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

"""stepper_controller_node through its topics and services on real rclpy (simulated and GRBL-on-a-pty)."""
from __future__ import annotations

import math
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from rclpy.parameter import Parameter

from celegans_autofocus.nodes.common import ConfigError, s_to_stamp, stamp_to_s
from celegans_autofocus.nodes.stepper_controller_node import StepperControllerNode
from test_hybrid import measure
from test_steppers import GrblPort


class Rig:
    """The node under test plus the probe's view of it: offsets in, joint states and diagnostics out."""

    def __init__(self, harness, **params):
        self.h = harness
        self.node = harness.start(StepperControllerNode, **params)
        self.joints = harness.probe.collect("stepper/joint_states", JointState)
        self.diagnostics = harness.probe.collect("/diagnostics", DiagnosticArray)
        self.offset_pub = harness.probe.publisher("focus/offset", PointStamped)
        assert harness.wait_for_subscribers(self.offset_pub)
        assert harness.spin_until(lambda: self.joints, timeout_s=15), "no joint_states"

    def send(self, offset_steps: float, age_s: float = 0.0) -> None:
        msg = PointStamped()
        msg.header.stamp = s_to_stamp(time.time() - age_s)
        msg.point.z = offset_steps
        n = self.node.offsets_received
        self.offset_pub.publish(msg)
        assert self.h.spin_until(lambda: self.node.offsets_received > n, timeout_s=15), "offset not received"

    def position(self) -> float:
        return self.joints[-1].position[0]

    def settle(self, s: float = 0.15) -> None:
        """Let a move finish, its settle time pass and fresh joint states arrive."""
        self.h.spin_for(s)

    def status(self, predicate=lambda s: True, timeout_s: float = 5.0) -> DiagnosticStatus:
        mine = self.node.diagnostics.status_name
        found: list[DiagnosticStatus] = []

        def seen():
            found[:] = [s for d in self.diagnostics for s in d.status if s.name == mine and predicate(s)]
            return bool(found)

        assert self.h.spin_until(seen, timeout_s), "no matching diagnostics"
        return found[-1]

    def call(self, srv_type, name: str, **fields):
        client = self.h.probe.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(srv_type.Request(**fields))
        assert self.h.spin_until(future.done, timeout_s=10)
        return future.result()


FAST = dict(diagnostics_period_s=0.1, max_speed_steps_per_s=4000.0)


def test_offset_moves_the_motor_and_joint_states_follow(ros_harness):
    rig = Rig(ros_harness, **FAST, stale_after_s=0.3)
    assert rig.joints[-1].name == ["focus"] and rig.position() == 0
    for _ in range(2):                                # a small offset waits for the median of K = 3
        rig.send(15.0)
        assert rig.node.last_decision.reason.value == "collecting"
    assert rig.position() == 0 and rig.node.moves == 0
    rig.send(15.0)
    rig.settle()
    assert rig.position() == 15
    rig.settle(0.4)                                   # older predictions age out of the window
    rig.send(105.0)                                   # far from focus: one prediction acts
    rig.settle()
    assert rig.position() == 120 and rig.node.moves == 2


def test_frames_taken_during_the_move_and_within_the_deadband_hold(ros_harness):
    rig = Rig(ros_harness, **{**FAST, "max_speed_steps_per_s": 500.0})
    rig.send(100.0)                                   # 0.2 s move at 500 steps/s
    rig.send(100.0)                                   # stamped before the move ended: ignored
    assert rig.node.last_decision.reason.value == "unsettled"
    rig.settle(0.4)
    assert rig.position() == 100 and rig.node.moves == 1
    rig.send(5.0)                                     # inside the 8-step deadband
    rig.settle()
    assert rig.node.last_decision.reason.value == "in_focus" and rig.position() == 100


@pytest.mark.parametrize("garbage", [math.nan, math.inf, -math.inf, 1e12, -1.7e308])
def test_non_finite_or_impossible_offsets_never_move_the_motor(ros_harness, garbage):
    rig = Rig(ros_harness, **FAST)
    for _ in range(4):
        rig.send(garbage)
    rig.settle()
    assert rig.position() == 0 and rig.node.moves == 0
    reason = "non_finite" if not math.isfinite(garbage) else "implausible"
    status = rig.status(lambda s: reason in s.message)
    assert status.level == DiagnosticStatus.WARN


def test_stale_offsets_hold_and_the_watchdog_reports(ros_harness):
    rig = Rig(ros_harness, **FAST, stale_after_s=0.3)
    rig.send(150.0, age_s=2.0)                        # a prediction from a frame 2 s old
    rig.settle()
    assert rig.position() == 0 and rig.node.last_decision.reason.value == "stale"
    status = rig.status(lambda s: "watchdog" in s.message)
    assert status.level == DiagnosticStatus.WARN and "0.3 s" in status.message
    rig.send(150.0)                                   # fresh again: acts
    rig.settle()
    assert rig.position() == 150


def test_command_beyond_the_soft_limits_stops_at_the_limit(ros_harness):
    rig = Rig(ros_harness, **FAST, soft_min_steps=-50, soft_max_steps=60)
    rig.send(200.0)
    rig.settle()
    assert rig.position() == 60
    assert rig.node.last_decision.at_limit
    rig.send(140.0)                                   # still 140 short, already at the limit: no move
    rig.settle()
    assert rig.position() == 60 and rig.node.moves == 1
    assert rig.status(lambda s: "at_limit" in s.message).level == DiagnosticStatus.WARN
    assert max(p for j in rig.joints for p in j.position) <= 60


def test_services_enable_focus_and_home(ros_harness):
    rig = Rig(ros_harness, **FAST)
    assert rig.call(SetBool, "focus/enable", data=False).success
    rig.send(100.0)
    rig.settle()
    assert rig.position() == 0 and rig.node.last_decision.reason.value == "disabled"
    assert rig.call(SetBool, "focus/enable", data=True).success

    assert rig.call(SetBool, "stepper/enable", data=False).success
    rig.send(100.0)
    rig.settle()
    assert rig.position() == 0 and "disabled" in rig.node.last_hold
    assert rig.status(lambda s: s.message == "stepper disabled").level == DiagnosticStatus.WARN
    assert rig.call(SetBool, "stepper/enable", data=True).success

    rig.send(100.0)
    rig.settle()
    assert rig.position() == 100
    reply = rig.call(Trigger, "stepper/home")
    assert reply.success and "position 0" in reply.message
    rig.settle()
    assert rig.position() == 0


def test_fault_stops_motion_then_reconnects(ros_harness):
    rig = Rig(ros_harness, **FAST, reconnect_period_s=0.5)
    rig.node.stepper.inject_fault("driver overheated")
    rig.send(100.0)
    rig.settle()
    assert rig.position() == 0 and "driver overheated" in rig.node.last_hold
    assert rig.status(lambda s: s.level == DiagnosticStatus.ERROR).message.startswith("fault, no motion")
    assert ros_harness.spin_until(lambda: rig.node.stepper.fault is None, timeout_s=15), "never reconnected"
    rig.settle()                                      # frames from before the reconnect are not trusted
    rig.send(100.0)
    rig.settle()
    assert rig.position() == 100


def test_grbl_port_disappears_fault_no_motion_then_reconnect(ros_harness, tmp_path):
    port = GrblPort(tmp_path / "ttyGRBL")
    fake = port.plug()
    try:
        rig = Rig(ros_harness, **FAST, backend="grbl", port=port.port, startup_s=0.01, reconnect_period_s=0.3)
        rig.send(40.0)
        assert ros_harness.spin_until(lambda: rig.position() == 40, timeout_s=15)
        assert fake.lines[-1] == "G91 G1 Z0.20000 F1200.000"
        port.unplug(fake)
        assert ros_harness.spin_until(lambda: rig.node.stepper.fault is not None, timeout_s=15)
        assert "lost" in rig.node.stepper.fault
        rig.send(100.0)
        rig.settle()
        assert rig.position() == 40 and rig.node.moves == 1   # fault: no motion
        assert rig.status(lambda s: s.level == DiagnosticStatus.ERROR).message.startswith("fault, no motion")

        new = port.plug(z_mm=0.2)                               # plugged back in (GRBL kept its position)
        assert ros_harness.spin_until(lambda: rig.node.stepper.fault is None, timeout_s=15), "no reconnect"
        rig.settle()
        rig.send(-30.0)
        assert ros_harness.spin_until(lambda: rig.position() == 10, timeout_s=15)
        assert new.lines == ["G91 G1 Z-0.15000 F1200.000"]
    finally:
        for f in port.fakes:
            if not f._stop.is_set():
                f.disappear()


def test_grbl_port_lost_mid_move_and_back_elsewhere_is_a_fault_until_homed(ros_harness, tmp_path):
    """The link to GRBL drops mid-move and GRBL, still powered, finishes the move.

    The controller stops sending, and after the reconnect the position differs from the last one read, so it
    stays in fault (no motion, "home it") until stepper/home; then focus moves again.
    """
    port = GrblPort(tmp_path / "ttyGRBL")
    fake = port.plug()
    try:
        rig = Rig(ros_harness, **{**FAST, "max_speed_steps_per_s": 200.0}, backend="grbl", port=port.port,
                  startup_s=0.01, reconnect_period_s=0.3)
        rig.send(150.0)                                         # 150 steps at 200 steps/s: 0.75 s
        assert ros_harness.spin_until(lambda: 0 < rig.position() < 150, timeout_s=5), "never saw the move"
        port.unplug(fake)                                       # mid-move
        assert ros_harness.spin_until(lambda: rig.node.stepper.fault is not None, timeout_s=15)
        last_read = rig.node.stepper.position_steps
        assert 0 < last_read < 150 and "lost" in rig.node.stepper.fault
        rig.send(100.0)
        rig.settle()
        assert rig.node.moves == 1 and rig.position() == last_read  # fault: no motion
        assert rig.status(lambda s: s.level == DiagnosticStatus.ERROR).message.startswith("fault, no motion")

        new = port.plug(z_mm=0.75)                              # back, at the end of the move (150 steps)
        assert ros_harness.spin_until(lambda: "position changed across the reconnect"
                                      in (rig.node.stepper.fault or ""), timeout_s=15), rig.node.stepper.fault
        rig.send(100.0)
        rig.settle()
        assert rig.node.moves == 1 and not [line for line in new.lines if line.startswith("G91")]
        assert "home it" in rig.status(lambda s: "position changed" in s.message).message

        reply = rig.call(Trigger, "stepper/home")
        assert reply.success and new.lines == ["$H"] and rig.node.stepper.fault is None
        rig.settle()
        rig.send(40.0)
        assert ros_harness.spin_until(lambda: rig.position() == 40, timeout_s=15)
        assert new.lines == ["$H", "G91 G1 Z0.20000 F60.000"]
    finally:
        for f in port.fakes:
            if not f._stop.is_set():
                f.disappear()


def test_unusable_configuration_is_refused_with_the_reason(ros_harness, tmp_path):
    missing = tmp_path / "no_such_tty"
    with pytest.raises(ConfigError, match=str(missing)):
        ros_harness.start(StepperControllerNode, backend="grbl", port=str(missing), startup_s=0.0)
    with pytest.raises(ConfigError, match="act_now_steps"):
        ros_harness.start(StepperControllerNode, deadband_steps=30.0, act_now_steps=10.0)
    with pytest.raises(ConfigError, match="step_pin"):
        ros_harness.start(StepperControllerNode, backend="gpio")


def test_control_law_is_tunable_at_run_time_and_bad_values_are_refused(ros_harness):
    rig = Rig(ros_harness, **FAST)
    node = rig.node
    ok = node.set_parameters([Parameter("deadband_steps", value=20.0), Parameter("median_window", value=1)])
    assert all(r.successful for r in ok)
    assert node.controller.config.deadband_steps == 20.0 and node.controller.config.median_window == 1
    rig.send(15.0)                                    # within the new 20-step deadband: hold at once (K = 1)
    rig.settle()
    assert node.last_decision.reason.value == "in_focus" and rig.position() == 0
    rig.send(30.0)
    rig.settle()
    assert rig.position() == 30 and node.moves == 1
    for bad in (Parameter("gain", value=5.0), Parameter("median_window", value=0),
                Parameter("deadband_steps", value=math.nan)):
        result = node.set_parameters([bad])[0]
        assert not result.successful and result.reason, bad.name
    assert node.controller.config.deadband_steps == 20.0 and node.controller.config.gain == 1.0
    together = node.set_parameters([Parameter("deadband_steps", value=30.0)])[0]   # valid alone, > act_now 24
    assert not together.successful and "control law" in together.reason and "act_now_steps" in together.reason
    assert node.controller.config.deadband_steps == 20.0
    refused = node.set_parameters([Parameter("soft_max_steps", value=5)])[0]   # the driver's limits: fixed
    assert not refused.successful


def test_on_the_simulated_clock_a_decision_waits_the_modelled_latency_and_answers_each_frame(ros_harness):
    """use_sim_time: the simulated stepper moves in simulated time.

    The move for a frame stamped t starts at t + modelled_latency_s; every offset gets its focus/command, with
    the frame's stamp.
    """
    node = ros_harness.start(StepperControllerNode, use_sim_time=True, modelled_latency_s=0.03,
                             max_speed_steps_per_s=1000.0)
    probe = ros_harness.probe
    joints = probe.collect("stepper/joint_states", JointState)
    commands = probe.collect("focus/command", PointStamped)
    clock_pub = probe.publisher("/clock", Clock)
    offset_pub = probe.publisher("focus/offset", PointStamped)
    assert ros_harness.wait_for_subscribers(clock_pub) and ros_harness.wait_for_subscribers(offset_pub)

    def at(t_s: float) -> None:
        clock_pub.publish(Clock(clock=s_to_stamp(t_s)))
        assert ros_harness.spin_until(lambda: joints and stamp_to_s(joints[-1].header.stamp) == pytest.approx(t_s))

    def offset(t_s: float, z: float) -> PointStamped:
        msg = PointStamped(header=Header(stamp=s_to_stamp(t_s)))
        msg.point.z = z
        n = len(commands)
        offset_pub.publish(msg)
        assert ros_harness.spin_until(lambda: len(commands) == n + 1)
        return commands[-1]

    at(10.0)
    assert joints[-1].position[0] == 0
    command = offset(10.0, 50.0)                      # far: acts at once, a 50 ms move from 10.03 s
    assert stamp_to_s(command.header.stamp) == pytest.approx(10.0)
    assert (command.point.x, command.point.y, command.point.z) == (0.0, 50.0, 50.0)
    at(10.04)                                         # 10 ms into the move: 10 steps at 1000 steps/s
    assert joints[-1].position[0] == 10
    at(10.1)
    assert joints[-1].position[0] == 50
    hold = offset(10.05, 50.0)                        # taken mid-move: held, and answered all the same
    assert hold.point.z == 0.0 and node.last_decision.reason.value == "unsettled"
    nan = offset(10.2, math.nan)                      # no prediction for that frame: held, answered
    assert nan.point.z == 0.0 and node.moves == 1 and joints[-1].position[0] == 50


def test_hybrid_mode_pairs_each_offset_with_its_measure_and_reports_its_mode(ros_harness):
    """control_mode hybrid: a frame is decided once both its focus/offset and its focus/measure are in.

    They may come in either order; the mode and the mode changes are on /diagnostics; non-finite input never moves.
    """
    node = ros_harness.start(StepperControllerNode, control_mode="hybrid", diagnostics_period_s=0.1,
                             max_speed_steps_per_s=4000.0)
    probe = ros_harness.probe
    commands = probe.collect("focus/command", PointStamped)
    diagnostics = probe.collect("/diagnostics", DiagnosticArray)
    offset_pub = probe.publisher("focus/offset", PointStamped)
    measure_pub = probe.publisher("focus/measure", PointStamped)
    assert ros_harness.wait_for_subscribers(offset_pub) and ros_harness.wait_for_subscribers(measure_pub)

    def send(pub, t_s: float, z: float) -> None:
        msg = PointStamped(header=Header(stamp=s_to_stamp(t_s)))
        msg.point.z = z
        pub.publish(msg)

    t0 = time.time()
    send(offset_pub, t0, 100.0)                       # the offset first: no decision without its measure
    ros_harness.spin_for(0.3)
    assert commands == []
    send(measure_pub, t0, 0.5)
    assert ros_harness.spin_until(lambda: len(commands) == 1)
    assert commands[0].point.z == 100.0 and node.hybrid.mode.value == "acquire"   # a jump by the CNN
    ros_harness.spin_for(0.2)
    send(measure_pub, t0 + 0.15, math.nan)            # the measure first, non-finite: hold
    send(offset_pub, t0 + 0.15, 0.0)
    assert ros_harness.spin_until(lambda: len(commands) == 2)
    assert commands[1].point.z == 0.0 and node.moves == 1
    assert ros_harness.spin_until(lambda: any(
        kv.key == "mode" for d in diagnostics for s in d.status if s.name == node.diagnostics.status_name
        for kv in s.values))
    status = [s for d in diagnostics for s in d.status if s.name == node.diagnostics.status_name][-1]
    values = {kv.key: kv.value for kv in status.values}
    assert values["control_mode"] == "hybrid" and values["mode"] in ("acquire", "refine", "track", "search")
    assert "start" in values["last_mode_change"]


def test_hybrid_survives_stamps_no_clock_makes_and_answers_them_without_a_move(ros_harness):
    """A header stamp with sec < 0 (rclpy's Time refuses it) on any input is dropped or held, never a crash."""
    node = ros_harness.start(StepperControllerNode, control_mode="hybrid", max_speed_steps_per_s=4000.0)
    probe = ros_harness.probe
    commands = probe.collect("focus/command", PointStamped)
    topics = ("focus/offset", "focus/measure", "focus/offset_sigma")
    pubs = {topic: probe.publisher(topic, PointStamped) for topic in topics}
    assert all(ros_harness.wait_for_subscribers(pub) for pub in pubs.values())
    for topic, pub in pubs.items():
        msg = PointStamped()
        msg.header.stamp.sec = -1
        msg.point.z = 100.0 if topic == "focus/offset" else 1.0
        pub.publish(msg)
    assert ros_harness.spin_until(lambda: len(commands) == 1)
    assert commands[0].point.z == 0.0 and node.moves == 0 and "malformed" in node.last_hold
    stamp = s_to_stamp(time.time())  # the node still decides good frames
    for topic, z in (("focus/offset_sigma", 5.0), ("focus/measure", 0.5), ("focus/offset", 100.0)):
        msg = PointStamped(header=Header(stamp=stamp))
        msg.point.z = z
        pubs[topic].publish(msg)
    assert ros_harness.spin_until(lambda: len(commands) == 2)
    assert commands[1].point.z == 100.0 and node.moves == 1


def test_hybrid_holds_on_a_prediction_whose_focus_offset_sigma_is_too_large(ros_harness):
    """focus/offset_sigma (models with an uncertainty output) reaches the hybrid, paired by stamp."""
    node = ros_harness.start(StepperControllerNode, control_mode="hybrid", max_speed_steps_per_s=4000.0,
                             hybrid_max_sigma_steps=20.0)
    probe = ros_harness.probe
    commands = probe.collect("focus/command", PointStamped)
    pubs = {topic: probe.publisher(topic, PointStamped) for topic in ("focus/offset", "focus/offset_sigma",
                                                                      "focus/measure")}
    assert all(ros_harness.wait_for_subscribers(pub) for pub in pubs.values())

    def frame(t_s: float, offset: float, sigma: float, sigma_last: bool = False) -> None:
        order = [("focus/offset_sigma", sigma), ("focus/measure", 0.5), ("focus/offset", offset)]
        for topic, z in order[1:] + order[:1] if sigma_last else order:
            msg = PointStamped(header=Header(stamp=s_to_stamp(t_s)))
            msg.point.z = z
            pubs[topic].publish(msg)
            ros_harness.spin_for(0.05)

    t0 = time.time()
    frame(t0, 100.0, 80.0)                            # unsure: no jump
    assert ros_harness.spin_until(lambda: len(commands) == 1)
    assert commands[0].point.z == 0.0 and node.moves == 0 and "not confident" in node.last_hold
    frame(t0 + 0.2, 100.0, 80.0, sigma_last=True)     # its sigma comes last: the frame waits for it, no jump
    assert ros_harness.spin_until(lambda: len(commands) == 2)
    assert commands[1].point.z == 0.0 and node.moves == 0 and "not confident" in node.last_hold
    frame(t0 + 0.4, 100.0, 5.0, sigma_last=True)      # sure: the jump
    assert ros_harness.spin_until(lambda: len(commands) == 3)
    assert commands[2].point.z == 100.0 and node.moves == 1


def test_hybrid_settings_are_tunable_at_run_time_and_bad_ones_refused(ros_harness):
    node = ros_harness.start(StepperControllerNode, control_mode="hybrid")
    assert node.set_parameters([Parameter("hybrid_max_strikes", value=3)])[0].successful
    assert node.hybrid.config.max_strikes == 3
    assert node.set_parameters([Parameter("hybrid_unusable_frames", value=5)])[0].successful
    assert node.hybrid.config.unusable_frames == 5
    assert node.set_parameters([Parameter("hybrid_unsure_frames", value=2)])[0].successful
    assert node.hybrid.config.unsure_frames == 2
    assert not node.set_parameters([Parameter("hybrid_unsure_frames", value=0)])[0].successful
    result = node.set_parameters([Parameter("hybrid_probe_steps", value=50)])[0]   # > refine_span_steps 36
    assert not result.successful and "refine_span_steps" in result.reason
    assert node.hybrid.config.probe_steps == 6
    assert node.set_parameters([Parameter("hybrid_bias_frames", value=8)])[0].successful
    assert node.hybrid.config.bias_frames == 8
    node.tilt.add(100.0, 100.0, 5.0)
    assert node.set_parameters([Parameter("tilt_noise_steps", value=6.0)])[0].successful
    assert node.tilt.noise_steps == 6.0 and len(node.tilt.samples) == 1      # what was learnt is kept
    assert not node.set_parameters([Parameter("tilt_slope_sigma_steps_per_px", value=0.0)])[0].successful
    described = {p.name: p for p in node.describe_parameters(list(node._parameters))}
    tunable = [name for name in described if name.startswith(("hybrid_", "tilt_")) or name == "control_mode"]
    assert len(tunable) >= 25                                                # every setting says what it does
    assert all(described[name].description and not described[name].read_only for name in tunable)


class HybridPlant:
    """A lens, a worm and a model around the hybrid node, through its topics only.

    Each frame publishes ``worm/target``, ``focus/measure`` (test_hybrid's measure curve) and ``focus/offset``
    (``model(error)``) stamped now, waits for the ``focus/command`` that answers it and moves the lens there.
    """

    def __init__(self, harness, **params):
        self.h = harness
        self.node = harness.start(StepperControllerNode, control_mode="hybrid", max_speed_steps_per_s=4000.0,
                                  diagnostics_period_s=0.1, **params)
        probe = harness.probe
        self.commands = probe.collect("focus/command", PointStamped)
        self.pubs = {topic: probe.publisher(topic, PointStamped)
                     for topic in ("worm/target", "focus/measure", "focus/offset", "worm/target_switch")}
        assert all(harness.wait_for_subscribers(pub) for pub in self.pubs.values())
        self.z, self.best, self.xy = 0.0, 0.0, (500.0, 400.0)
        self.model = lambda err: err

    def publish(self, topic: str, t_s: float, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> None:
        msg = PointStamped(header=Header(stamp=s_to_stamp(t_s)))
        msg.point.x, msg.point.y, msg.point.z = float(x), float(y), float(z)
        self.pubs[topic].publish(msg)

    def error(self) -> float:
        return self.best - self.z

    def frame(self) -> PointStamped:
        t_s, err = time.time(), self.error()
        self.publish("worm/target", t_s, *self.xy, 0.0)
        self.publish("focus/measure", t_s, z=measure(err))
        self.publish("focus/offset", t_s, z=self.model(err))
        stamp = s_to_stamp(t_s)
        assert self.h.spin_until(lambda: any(c.header.stamp == stamp for c in self.commands), timeout_s=10)
        command = next(c for c in self.commands if c.header.stamp == stamp)
        if command.point.z:
            self.z = command.point.y
            self.h.spin_for(0.07 + abs(command.point.z) / 4000.0)  # the move, then the settle time
        return command

    def run_until(self, done, max_frames: int = 80) -> int:
        for i in range(max_frames):
            if done():
                return i
            self.frame()
        raise AssertionError(f"not done after {max_frames} frames; mode changes: {self.reasons()}")

    def switch(self, xy: tuple[float, float], best: float) -> None:
        """Announce, as the tracker does, another worm at ``xy`` whose plane is at ``best``."""
        n = self.node.target_switches
        self.publish("worm/target_switch", time.time(), *xy, n + 1.0)
        assert self.h.spin_until(lambda: self.node.target_switches == n + 1, timeout_s=10)
        self.xy, self.best = xy, best

    def reasons(self) -> list[str]:
        return [c.reason.value for c in self.node.hybrid.changes]

    def in_track(self, trusted: bool = True) -> bool:
        return self.node.hybrid.mode.value == "track" and self.node.hybrid.cnn_trusted == trusted


def test_hybrid_mode_changes_through_the_graph_jump_refine_track_switch_search_and_back(ros_harness):
    """Every mode change of the hybrid on a real rclpy graph: the node decides, the plant obeys."""
    plant = HybridPlant(ros_harness)
    node = plant.node
    plant.best, plant.model = 150.0, lambda err: err + 9.0         # a model biased near focus, like the bundled one
    plant.run_until(plant.in_track)
    assert plant.reasons()[:3] == ["start", "near_focus", "focused"] and abs(plant.error()) <= 2
    for _ in range(5):
        plant.frame()
    assert node.hybrid.cnn_bias_steps == pytest.approx(9.0, abs=2.0)  # learnt from the verified frames
    plant.best += 14.0                                             # the worm sank: the measure drops
    n = len(plant.reasons())
    plant.run_until(lambda: plant.in_track() and len(plant.reasons()) > n + 1)
    assert plant.reasons()[n:n + 2] == ["measure_drop", "focused"] and abs(plant.error()) <= 2
    plant.switch((1500.0, 900.0), plant.best - 90.0)               # the tracker takes another worm
    assert node.hybrid.mode.value == "acquire" and plant.reasons()[-1] == "target_changed"
    plant.run_until(lambda: plant.in_track() and abs(plant.error()) <= 2)
    plant.switch((200.0, 100.0), plant.best + 60.0)                # ... and the model turns wrong
    plant.model = lambda err: -140.0
    plant.run_until(lambda: node.hybrid.mode.value == "search", 10)
    assert plant.reasons()[-1] in ("refuted", "verify_inconsistent", "verify_worse") and node.hybrid.strikes >= 2
    plant.run_until(lambda: plant.in_track(trusted=False))         # the search finds the worm regardless
    assert "search_converged" in plant.reasons() and abs(plant.error()) <= 4
    assert min(c.point.y for c in plant.commands) >= -1000          # within the soft limits throughout
    plant.model = lambda err: err + 9.0                            # the model is right again: trusted again
    plant.run_until(plant.in_track)
    assert plant.reasons()[-1] == "cnn_agrees"
    values = node._report()[2]                                     # what /diagnostics publishes
    assert values["mode"] == "track" and values["target_switches"] == "2" and "cnn_agrees" in values[
        "last_mode_change"]


def test_hybrid_learns_the_plate_tilt_from_worms_it_focused_and_refines_a_new_one_where_it_predicts(ros_harness):
    """Worms at three places of a tilted plate teach the tilt; a fourth is found with no CNN at all."""
    plant = HybridPlant(ros_harness, tilt_sample_period_s=0.0)
    node = plant.node

    def plate(x: float, y: float) -> float:
        return 0.08 * (x - 500.0) - 0.06 * (y - 400.0)             # steps: the plate is tilted

    for xy in ((500.0, 400.0), (900.0, 400.0), (500.0, 800.0)):   # the CNN focuses each worm; the tilt learns
        if node.target_switches or xy != plant.xy:
            plant.switch(xy, plate(*xy))
            assert "plate tilt" not in node.last_mode_change.detail  # too far from what is known to predict
        plant.best = plate(*xy)
        plant.run_until(lambda: plant.in_track() and abs(plant.error()) <= 2)
        for _ in range(3):
            plant.frame()
    dzdx, dzdy = node.tilt.slope_steps_per_px()
    assert dzdx == pytest.approx(0.08, abs=0.01) and dzdy == pytest.approx(-0.06, abs=0.01)
    plant.model = lambda err: math.nan                             # no CNN: the tilt and the measure alone
    plant.switch((900.0, 800.0), plate(900.0, 800.0))
    change = node.last_mode_change
    assert change.reason.value == "target_changed" and "plate tilt puts the new one at z=8" in change.detail
    first = plant.frame()
    assert plant.reasons()[-1] == "plane_predicted" and abs(first.point.y - plate(900.0, 800.0)) <= 2
    plant.run_until(lambda: plant.in_track() and abs(plant.error()) <= 2, 20)


def test_control_mode_switches_at_run_time_between_the_hybrid_and_the_one_shot_law(ros_harness):
    plant = HybridPlant(ros_harness)
    node, probe = plant.node, ros_harness.probe
    plant.best = 100.0
    plant.run_until(plant.in_track)
    old = node.hybrid
    assert node.set_parameters([Parameter("control_mode", value="cnn")])[0].successful
    assert node.hybrid is None and node.law is node.controller
    assert ros_harness.spin_until(lambda: probe.count_subscribers("focus/measure") == 0, timeout_s=10)
    ros_harness.spin_for(0.1)                                     # frames from before the switch are not used
    plant.best += 60.0
    command = plant.frame()                                       # the one-shot law: the offset alone decides
    assert command.point.z == 60.0 and node.last_decision.reason.value == "move"
    assert node.set_parameters([Parameter("control_mode", value="hybrid")])[0].successful
    assert ros_harness.spin_until(lambda: probe.count_subscribers("focus/measure") == 1, timeout_s=10)
    assert node.hybrid is not old and node.hybrid.changes == []   # a fresh hybrid
    ros_harness.spin_for(0.1)
    plant.best -= 80.0
    plant.run_until(lambda: plant.in_track() and abs(plant.error()) <= 2)
    assert plant.reasons()[0] == "start"
    assert not node.set_parameters([Parameter("control_mode", value="oneshot")])[0].successful
