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

"""stepper_controller_node: focus/offset -> the control law (docs/architecture.md) -> the focus stepper.

Every ``focus/offset`` (geometry_msgs/PointStamped, z = signed steps to focus, stamped with its
source image) goes through :class:`core.control.FocusController` (settle check against the image
stamp, median of K, deadband, gain, clamp, soft limits, watchdog); a MOVE decision becomes a
relative move of the stepper backend (``simulated``, ``gpio`` step/dir, ``grbl`` serial), which
enforces the soft limits, maximum speed and backlash compensation once more on its side.

``control_mode: hybrid`` (:mod:`core.hybrid`): each ``focus/offset`` is paired by stamp with its frame's
``focus/measure`` and, for models with an uncertainty output, ``focus/offset_sigma``.
``worm/target_switch`` (worm_detector_node) restarts the hybrid on the new worm. The fused best plane of
in-focus track frames, at the target's fresh ``worm/target`` image position, teaches the plate tilt
(:mod:`core.plate_tilt`), which then predicts the new worm's plane: this assumes a fixed field of view (the
camera does not follow the worm; ``tilt_enabled: false`` on a stage that does). Mode changes and their reasons
are logged and on ``/diagnostics``.

The motor never moves on garbage: non-finite or stale offsets, frames taken before the lens
settled, a disabled stepper or focus law, and a stepper fault all hold; ``/diagnostics`` says why.
A fault (e.g. the serial port disappeared) stops motion; the node retries ``reconnect`` every
``reconnect_period_s`` and resumes when the backend is back.

Publishes ``stepper/joint_states`` (sensor_msgs/JointState, position in steps) at
``publish_rate_hz`` and, for every ``focus/offset`` it receives, ``focus/command`` (PointStamped with
the offset's header: z = the relative move commanded, 0 = hold; x = position when deciding; y = the
target position): the controller's answer to that frame, which the simulated clock waits for.

On a simulated clock (``use_sim_time``) the simulated stepper moves in simulated time, and a frame's
decision is taken at its stamp + ``modelled_latency_s`` (the processing time the simulated clock does
not see), so latency still decides which lens position later frames show.

``stepper/target`` (sensor_msgs/JointState, position of ``joint_name`` in steps): move to that absolute
position, for ``celegans-autofocus acquire``. Refused (logged, and ``last_target`` on ``/diagnostics``) while
the focus law is enabled, outside the soft limits (never clamped), non-finite, or when the stepper refuses
(fault, disabled, busy). Services: ``stepper/enable``
(std_srvs/SetBool: energize/release the motor), ``stepper/home`` (std_srvs/Trigger; active node only),
``focus/enable`` (std_srvs/SetBool: the control law on/off).

A managed (lifecycle) node (nodes/lifecycle.py): ``configure`` opens the stepper backend and offers the
services, ``activate`` subscribes to ``focus/offset`` and publishes, ``deactivate`` stops both (nothing moves
the motor while inactive), ``cleanup`` closes the backend; ``autostart`` (default) configures and activates at
start-up.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from ..core.control import ControlConfig, Decision, FocusController
from ..core.hybrid import HybridAutofocus, HybridConfig, HybridDecision, HybridReason, Mode, ModeChange
from ..core.plate_tilt import PlateTilt
from ..core.sensor import STEP_UM
from ..hardware.steppers import BACKENDS, Stepper, StepperError, make_stepper
from .common import (ConfigError, Param, declare_params, refuse_inconsistent, reliable_qos, run_node, stamp_ns,
                     stamp_to_s)
from .diagnostics import NodeDiagnostics, Report
from .lifecycle import AUTOSTART, ManagedNode

LAW_PARAMS = ("gain", "deadband_steps", "max_move_steps", "median_window", "act_now_steps", "stale_after_s",
              "settle_s")
LIMIT_PARAMS = ("soft_min_steps", "soft_max_steps")
SHARED_HYBRID = ("max_move_steps", "stale_after_s", "settle_s")  # hybrid fields the law's parameters set
#: holds that mean something is wrong with the input (logged as warnings, shown on /diagnostics); the others
#: (in focus, collecting, unsettled ...) are the law working
PROBLEM_HOLDS = ("non_finite", "implausible", "stale", "at_limit")

_HYBRID = HybridConfig()  # the defaults of the hybrid_* parameters
HYBRID_PARAMS = (
    Param("hybrid_consistency_frames", _HYBRID.consistency_frames,
          "hybrid: K settled predictions whose best planes must agree before a "
          "jump (1: the frame after a jump verifies it)", range=(1, 100)),
    Param("hybrid_consistency_steps", _HYBRID.consistency_steps,
          "hybrid: best planes agree within max(this, fraction * |offset|)",
          range=(0.1, 10_000.0)),
    Param("hybrid_consistency_fraction", _HYBRID.consistency_fraction,
          "hybrid: relative part of the agreement tolerance", range=(0.0, 10.0)),
    Param("hybrid_max_sigma_steps", _HYBRID.max_sigma_steps,
          "hybrid: a prediction with a larger model-reported sigma is not confident",
          range=(0.1, 10_000.0)),
    Param("hybrid_cnn_bias_steps", _HYBRID.cnn_bias_steps,
          "hybrid: prior for the model's bias near focus, subtracted from every prediction until the bias "
          "learnt online from verified frames replaces it (changing it discards what was learnt)",
          range=(-1000.0, 1000.0)),
    Param("hybrid_cnn_sigma_steps", _HYBRID.cnn_sigma_steps,
          "hybrid: error of a CNN plane (a verified jump's, an agreeing one in track) for the best-plane filter "
          "when the model reports no sigma",
          range=(0.1, 10_000.0)),
    Param("hybrid_refine_window_steps", _HYBRID.refine_window_steps,
          "hybrid: predictions within this of focus are refined on the measure",
          range=(0.0, 10_000.0)),
    Param("hybrid_probe_steps", _HYBRID.probe_steps,
          "hybrid: step of the measure-guided refine", range=(1, 1000)),
    Param("hybrid_refine_span_steps", _HYBRID.refine_span_steps,
          "hybrid: farthest a refine climbs from its start", range=(1, 10_000)),
    Param("hybrid_measure_noise", _HYBRID.measure_noise,
          "hybrid: measure differences below this are noise", range=(0.0, 1e6)),
    Param("hybrid_min_peak_contrast", _HYBRID.min_peak_contrast,
          "hybrid: a refined peak must stand this far above its neighbours",
          range=(0.0, 1e6)),
    Param("hybrid_bias_frames", _HYBRID.bias_frames,
          "hybrid: the CNN's bias near focus is learnt per worm as the median of this many "
          "measure-verified residuals (0 keeps hybrid_cnn_bias_steps)", range=(0, 100_000)),
    Param("hybrid_min_bias_frames", _HYBRID.min_bias_frames,
          "hybrid: residuals needed before the learnt bias replaces the prior", range=(0, 100_000)),
    Param("hybrid_drop_fraction", _HYBRID.drop_fraction,
          "hybrid: the measure dropped when it fell by more than this fraction",
          range=(0.001, 0.999)),
    Param("hybrid_disagree_steps", _HYBRID.disagree_steps,
          "hybrid: the CNN disagrees with the measure's peak beyond this",
          range=(0.0, 10_000.0)),
    Param("hybrid_disagree_frames", _HYBRID.disagree_frames,
          "hybrid: disagreeing frames in track that count one strike", range=(1, 1000)),
    Param("hybrid_max_strikes", _HYBRID.max_strikes,
          "hybrid: strikes against the model before falling back to the search",
          range=(1, 1000)),
    Param("hybrid_oscillation_frames", _HYBRID.oscillation_frames,
          "hybrid: inconsistent prediction windows in a row before the search",
          range=(1, 1000)),
    Param("hybrid_unusable_frames", _HYBRID.unusable_frames,
          "hybrid: unusable predictions in acquire (non-finite, or not confident with an unclear sign) before "
          "a usable one, then the search", range=(1, 1000)),
    Param("hybrid_unsure_frames", _HYBRID.unsure_frames,
          "hybrid: of those, finite but unsure ones (not confident, sign unclear) before the search: a settled "
          "lens repeats them, a NaN glitch passes", range=(1, 1000)),
    Param("hybrid_follow_steps", _HYBRID.follow_steps,
          "hybrid: track moves to the best-plane estimate (measure peaks and the trusted CNN's agreeing planes) "
          "once it is this far from the lens and drifting away or beyond two of its sigmas",
          range=(0.1, 10_000.0)),
    Param("hybrid_refine_sigma_steps", _HYBRID.refine_sigma_steps,
          "hybrid: error of a refined peak for the best-plane filter",
          range=(0.1, 10_000.0)),
    Param("hybrid_drift_accel_sigma", _HYBRID.drift_accel_sigma,
          "hybrid: best-plane filter process noise, steps/s per sqrt(s)",
          range=(0.0, 1000.0)),
    Param("hybrid_max_drift_steps_per_s", _HYBRID.max_drift_steps_per_s,
          "hybrid: best-plane filter drift-rate cap", range=(0.1, 10_000.0)),
)

PARAMS = (
    Param("backend", "simulated", "stepper backend", choices=BACKENDS, read_only=True),
    Param("joint_name", "focus", "name of the focus joint in stepper/joint_states", read_only=True),
    Param("publish_rate_hz", 50.0, "stepper/joint_states rate", range=(1.0, 1000.0), read_only=True),
    Param("diagnostics_period_s", 1.0, "period of the /diagnostics status", range=(0.05, 60.0), read_only=True),
    Param("focus_enabled", True, "start with the focus control law enabled (service focus/enable)",
          read_only=True),
    Param("modelled_latency_s", 0.0, "simulated clock only (use_sim_time): a frame's decision is taken at its "
          "stamp + this, the pipeline's processing time the simulated clock does not see", range=(0.0, 10.0),
          read_only=True),
    Param("reconnect_period_s", 2.0, "in a stepper fault, try to reconnect this often", range=(0.1, 3600.0),
          read_only=True),
    # limits and motion, enforced by the law and by the stepper driver
    Param("soft_min_steps", -1000, "lowest allowed position", range=(-10_000_000, 10_000_000), read_only=True),
    Param("soft_max_steps", 1000, "highest allowed position", range=(-10_000_000, 10_000_000), read_only=True),
    Param("max_speed_steps_per_s", 2000.0, "maximum motor speed", range=(1.0, 1_000_000.0), read_only=True),
    Param("backlash_steps", 0, "backlash compensation: overshoot and return on moves against 'approach'",
          range=(0, 100_000), read_only=True),
    Param("approach", 1, "direction of the final approach of every move (+1 or -1)", choices=(1, -1),
          read_only=True),
    # the control law (core.control.ControlConfig); tunable at run time (`ros2 param set`)
    Param("gain", 1.0, "fraction of the median offset moved per decision", range=(0.01, 2.0)),
    Param("deadband_steps", 8.0, "hold when |median offset| is within this (about half the depth of field)",
          range=(0.0, 10_000.0)),
    Param("max_move_steps", 200, "largest single move", range=(1, 1_000_000)),
    Param("median_window", 3, "K: median of the last K settled predictions", range=(1, 100)),
    Param("act_now_steps", 24.0, "act on fewer than K predictions when the median is at least this far",
          range=(0.0, 100_000.0)),
    Param("stale_after_s", 1.0, "watchdog: predictions older than this (or none for this long) hold",
          range=(0.01, 3600.0)),
    Param("settle_s", 0.05, "ignore frames stamped before the end of the last move + this", range=(0.0, 60.0)),
    # simulated backend
    Param("initial_position_steps", 0, "simulated: start position", range=(-10_000_000, 10_000_000),
          read_only=True),
    # gpio backend (gpiozero pin names: 17, 'GPIO17', 'BOARD11'; '' = not connected)
    Param("step_pin", "", "gpio: STEP output pin", read_only=True),
    Param("dir_pin", "", "gpio: DIR output pin", read_only=True),
    Param("enable_pin", "", "gpio: driver ENABLE output pin ('' = none)", read_only=True),
    Param("home_pin", "", "gpio: home switch input ('' = none: home() zeroes where the motor is)", read_only=True),
    Param("fault_pin", "", "gpio: driver nFAULT input ('' = none)", read_only=True),
    # grbl backend
    Param("port", "/dev/ttyUSB0", "grbl: serial port", read_only=True),
    Param("baudrate", 115200, "grbl: serial baud rate", range=(1200, 4_000_000), read_only=True),
    Param("step_um", STEP_UM, "grbl: micrometres per step (GRBL works in mm)", range=(0.001, 10_000.0),
          read_only=True),
    Param("axis", "Z", "grbl: the focus axis", choices=("X", "Y", "Z"), read_only=True),
    Param("startup_s", 2.0, "grbl: wait after opening the port (opening resets an Arduino)", range=(0.0, 30.0),
          read_only=True),
    Param("control_mode", "cnn", "cnn: the one-shot law on focus/offset; hybrid: jump on the CNN, verify with "
          "focus/measure, refine on the measure, fall back to search (core.hybrid); switching at run time starts "
          "the new controller afresh", choices=("cnn", "hybrid")),
    *HYBRID_PARAMS,
    Param("tilt_enabled", True, "hybrid: after a worm switch, refine first at the plane the learnt plate tilt "
          "predicts at the new target's image position (for a fixed field of view; off on a stage that follows "
          "the worm)"),
    Param("tilt_noise_steps", 3.0, "hybrid, plate tilt: error of one sample (the fused best plane of an in-focus "
          "track frame at the target's xy from worm/target)", range=(0.01, 10_000.0)),
    Param("tilt_slope_sigma_steps_per_px", 0.05, "hybrid, plate tilt: prior standard deviation of the tilt",
          range=(1e-6, 100.0)),
    Param("tilt_max_samples", 200, "hybrid, plate tilt: the most recent samples kept", range=(1, 100_000)),
    Param("tilt_sample_period_s", 0.5, "hybrid, plate tilt: at most one sample per this (frame stamps)",
          range=(0.0, 3600.0)),
    AUTOSTART,
)
TILT_PARAMS = ("tilt_noise_steps", "tilt_slope_sigma_steps_per_px", "tilt_max_samples")


def _law_of(values: dict) -> ControlConfig:
    return ControlConfig(**{k: values[k] for k in LAW_PARAMS + LIMIT_PARAMS})


def _hybrid_of(values: dict) -> HybridConfig:
    own = {p.name[len("hybrid_"):]: values[p.name] for p in HYBRID_PARAMS}
    return HybridConfig(**own, **{k: values[k] for k in SHARED_HYBRID + LIMIT_PARAMS})


def _tilt_of(values: dict, samples=()) -> PlateTilt:
    tilt = PlateTilt(values["tilt_noise_steps"], values["tilt_slope_sigma_steps_per_px"], values["tilt_max_samples"])
    for sample in samples:
        tilt.add(*sample)
    return tilt


def _pin(name: str) -> int | str | None:
    return None if name == "" else int(name) if name.isdigit() else name


def stepper_from_params(p, clock: Callable[[], float] | None = None) -> Stepper:
    """Build the stepper backend the parameters describe; :class:`ConfigError` if it cannot start.

    ``clock`` (seconds) drives the simulated backend (default: the monotonic wall clock).
    """
    limits = dict(soft_min_steps=p.soft_min_steps, soft_max_steps=p.soft_max_steps,
                  max_speed_steps_per_s=p.max_speed_steps_per_s, backlash_steps=p.backlash_steps,
                  approach=p.approach)
    if p.backend == "simulated":
        extra = dict(position_steps=p.initial_position_steps, **({"clock": clock} if clock else {}))
    elif p.backend == "gpio":
        if not p.step_pin or not p.dir_pin:
            raise ConfigError("backend 'gpio' needs the step_pin and dir_pin parameters")
        extra = dict(step_pin=_pin(p.step_pin), dir_pin=_pin(p.dir_pin), enable_pin=_pin(p.enable_pin),
                     home_pin=_pin(p.home_pin), fault_pin=_pin(p.fault_pin))
    else:
        extra = dict(port=p.port, baudrate=p.baudrate, step_um=p.step_um, axis=p.axis, startup_s=p.startup_s)
    try:
        return make_stepper(p.backend, **extra, **limits)
    except (StepperError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


class StepperControllerNode(ManagedNode):
    """The focus stepper as a managed node; inactive, nothing moves the motor.

    configure opens the stepper and offers the services, activate subscribes to focus/offset and publishes
    joint states, cleanup closes the stepper.
    """

    NODE_NAME = "stepper_controller_node"

    def __init__(self, **kwargs):
        super().__init__(self.NODE_NAME, **kwargs)
        # what the lifecycle callbacks release: set first, so a half-built node is destroyed cleanly
        self.stepper: Stepper | None = None
        self.joint_pub = self.command_pub = None
        self._stepper_services: list = []
        self._offset_sub = self._measure_sub = self._tick_timer = self._stepper_target_sub = None
        self.last_target = ""          # what the last stepper/target did
        self._target_sub = self._switch_sub = self._sigma_sub = None
        self._target_xy: tuple[float, float, float] | None = None  # (stamp s, x px, y px) of the last seen target
        self.target_switches = 0
        self._last_tilt_sample_s = -math.inf
        self._measures: dict[int, float] = {}          # stamp ns -> focus/measure, awaiting their offset
        self._sigmas: dict[int, float] = {}            # stamp ns -> focus/offset_sigma (models with sigma)
        self._sigma_expected = False                   # sigmas are coming: a frame waits for its own
        self._waiting: dict[int, PointStamped] = {}    # stamp ns -> focus/offset, awaiting its measure or sigma
        self.params = declare_params(self, PARAMS)
        p = self.params
        try:
            config = _law_of(p.as_dict())
        except ValueError as exc:
            raise ConfigError(f"control law: {exc}") from None
        self.controller = FocusController(config, enabled=p.focus_enabled)
        refuse_inconsistent(self, self.params, _law_of, "control law")
        self.hybrid: HybridAutofocus | None = None
        if p.control_mode == "hybrid":
            try:
                self.hybrid = HybridAutofocus(_hybrid_of(p.as_dict()), enabled=p.focus_enabled)
            except ValueError as exc:
                raise ConfigError(f"hybrid control: {exc}") from None
        refuse_inconsistent(self, self.params, _hybrid_of, "hybrid control")  # checked in either mode
        self.tilt = _tilt_of(p.as_dict())  # the plate surface, learnt online (hybrid mode)
        self.last_mode_change: ModeChange | None = None
        self._last_offset_s: float | None = None
        self.params.on_change(self._on_params)
        self.sim_time = self.get_clock().ros_time_is_active
        self._acted_at_s = -float("inf")  # simulated clock: the latest decision time (stamp + latency)
        self.last_decision: Decision | HybridDecision | None = None
        self.last_hold = ""            # why the last offset did not move the motor ('' after a move)
        self.moves = 0
        self.offsets_received = 0
        self._fault_since_s: float | None = None
        self._last_reconnect_s = 0.0
        self.diagnostics = NodeDiagnostics(self, "focus stepper", p.diagnostics_period_s, self._report,
                                           lambda: self.params.backend)
        if p.autostart:
            self.autostart()

    def configure(self) -> None:
        p = self.params
        self.stepper = stepper_from_params(p, clock=self.now_s if self.sim_time else None)
        self.joint_pub = self.create_lifecycle_publisher(JointState, "stepper/joint_states", reliable_qos())
        self.command_pub = self.create_lifecycle_publisher(PointStamped, "focus/command", reliable_qos())
        self._stepper_services = [self.create_service(SetBool, "stepper/enable", self._srv_stepper_enable),
                                  self.create_service(Trigger, "stepper/home", self._srv_home),
                                  self.create_service(SetBool, "focus/enable", self._srv_focus_enable)]
        self.get_logger().info(f"{p.backend} stepper at {self.stepper.position_steps} steps, soft limits "
                               f"[{p.soft_min_steps}, {p.soft_max_steps}], focus control "
                               f"{'on' if p.focus_enabled else 'off'}")

    def activate(self) -> None:
        if self.hybrid is not None:
            self._subscribe_hybrid()
        self._offset_sub = self.create_subscription(PointStamped, "focus/offset", self._on_offset,
                                                    reliable_qos(depth=5))
        self._stepper_target_sub = self.create_subscription(JointState, "stepper/target", self._on_stepper_target,
                                                            reliable_qos())
        self._tick_timer = self.create_timer(1.0 / self.params.publish_rate_hz, self._tick)

    def _subscribe_hybrid(self) -> None:
        """Subscribe to each frame's sigma and focus measure (paired with its offset by stamp), the target and switches.

        The sigma subscription comes first: an executor takes ready subscriptions in the order they were created,
        and the predictor publishes a frame's sigma before its measure, so a sigma and a measure waiting together
        are taken in that order and the frame is decided with its sigma, however loaded the machine is (decided on
        the measure first, the first frame of an episode went without its sigma under load: sim's determinism).
        """
        self._sigma_sub = self.create_subscription(PointStamped, "focus/offset_sigma", self._on_sigma,
                                                   reliable_qos(depth=5))
        self._measure_sub = self.create_subscription(PointStamped, "focus/measure", self._on_measure,
                                                     reliable_qos(depth=5))
        self._target_sub = self.create_subscription(PointStamped, "worm/target", self._on_target, reliable_qos(depth=5))
        self._switch_sub = self.create_subscription(PointStamped, "worm/target_switch", self._on_switch,
                                                    reliable_qos(depth=10))

    def _unsubscribe_hybrid(self) -> None:
        for sub in (self._measure_sub, self._target_sub, self._switch_sub, self._sigma_sub):
            if sub is not None:
                self.destroy_subscription(sub)
        self._measure_sub = self._target_sub = self._switch_sub = self._sigma_sub = None
        self._measures.clear()
        self._sigmas.clear()
        self._sigma_expected = False
        self._waiting.clear()

    def deactivate(self) -> None:
        self._unsubscribe_hybrid()
        for sub in (self._offset_sub, self._stepper_target_sub):
            if sub is not None:
                self.destroy_subscription(sub)
        if self._tick_timer is not None:
            self.destroy_timer(self._tick_timer)
        self._offset_sub = self._stepper_target_sub = self._tick_timer = None

    def cleanup(self) -> None:
        for pub in (self.joint_pub, self.command_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.joint_pub = self.command_pub = None
        for service in self._stepper_services:
            self.destroy_service(service)
        self._stepper_services = []
        if self.stepper is not None:
            self.stepper.close()
            self.stepper = None
        self.tilt = _tilt_of(self.params.as_dict())  # a configure may bring another plate

    def _on_params(self, changed: dict) -> None:
        if "control_mode" in changed:
            self._switch_control_mode(changed["control_mode"])
        if set(changed) & set(LAW_PARAMS):
            self.controller.reconfigure(_law_of(self.params.as_dict()))
            self.get_logger().info(f"control law updated: {changed}")
        if self.hybrid is not None and set(changed) & {p.name for p in HYBRID_PARAMS} | set(SHARED_HYBRID):
            self.hybrid.reconfigure(_hybrid_of(self.params.as_dict()))
            self.get_logger().info(f"hybrid control updated: {changed}")
        if set(changed) & set(TILT_PARAMS):
            self.tilt = _tilt_of(self.params.as_dict(), self.tilt.samples)

    def _switch_control_mode(self, mode: str) -> None:
        """Switch between the one-shot law and the hybrid at run time; the new one starts afresh, the motor holds."""
        enabled, move_end_s = self.law.enabled, self.law.move_end_s
        self._unsubscribe_hybrid()
        if mode == "hybrid":
            self.hybrid = HybridAutofocus(_hybrid_of(self.params.as_dict()), enabled=enabled)
            if self.is_active:
                self._subscribe_hybrid()
        else:
            self.hybrid = None
            self.controller.enable(enabled)
        if self.stepper is not None:
            # frames taken before now, or before a move in progress ends, are not used
            self.law.record_move(max(self.now_s(), move_end_s))
        self.last_decision, self.last_mode_change = None, None
        self.get_logger().info(f"control mode: {mode}")

    @property
    def law(self) -> FocusController | HybridAutofocus:
        """Return the controller that decides: the one-shot law, or the hybrid."""
        return self.hybrid if self.hybrid is not None else self.controller

    def now_s(self) -> float:
        """Return the node clock in seconds; on a simulated clock never earlier than the latest decision."""
        return max(self.get_clock().now().nanoseconds * 1e-9, self._acted_at_s)

    # ------------------------------------------------------------ control
    def _hold(self, why: str) -> None:
        self.last_hold = why
        self.get_logger().debug(f"hold: {why}")

    def _malformed_stamp(self, topic: str, msg: PointStamped) -> None:
        self.get_logger().warning(f"{topic} with a malformed header stamp {msg.header.stamp.sec} s "
                                  f"{msg.header.stamp.nanosec} ns: ignored", throttle_duration_sec=2.0)

    def _on_measure(self, msg: PointStamped) -> None:
        ns = stamp_ns(msg.header.stamp)
        if ns is None:
            return self._malformed_stamp("focus/measure", msg)
        self._measures[ns] = msg.point.z
        while len(self._measures) > 20:  # measures of frames whose offset never came
            self._measures.pop(next(iter(self._measures)))
        self._answer_if_complete(ns)

    def _on_target(self, msg: PointStamped) -> None:
        if msg.point.z == 0 and math.isfinite(msg.point.x) and math.isfinite(msg.point.y):  # seen in this frame
            self._target_xy = (stamp_to_s(msg.header.stamp), msg.point.x, msg.point.y)

    def _on_switch(self, msg: PointStamped) -> None:
        """Restart the hybrid on the worm the tracker switched to, at the plane the plate tilt predicts there."""
        self.target_switches += 1
        x, y = msg.point.x, msg.point.y
        hint = self.tilt.predict(x, y) if self.params.tilt_enabled and math.isfinite(x) and math.isfinite(y) else None
        self._target_xy = None  # the old worm's position is no sample for the new one
        self._log_change(self.hybrid.target_changed(stamp_to_s(msg.header.stamp), *(hint or (None, None))))

    def _log_change(self, change: ModeChange | None) -> None:
        if change is not None:
            self.last_mode_change = change
            self.get_logger().info(f"hybrid mode {change.previous.value} -> {change.mode.value} "
                                   f"({change.reason.value}): {change.detail}")

    def _sample_tilt(self, decision: HybridDecision, stamp_s: float) -> None:
        """Sample the plate with an in-focus track frame (the measure says so) whose target position is fresh.

        The sample is the fused best plane at the frame's stamp (the last refined peak moved by the drift rate).
        """
        xy = self._target_xy
        if (decision.mode != Mode.TRACK or decision.reason != HybridReason.IN_FOCUS or xy is None
                or abs(xy[0] - stamp_s) > self.params.stale_after_s
                or stamp_s - self._last_tilt_sample_s < self.params.tilt_sample_period_s):
            return
        z = self.hybrid.best_z_steps(stamp_s)
        if z is not None and math.isfinite(z):
            self.tilt.add(xy[1], xy[2], z)
            self._last_tilt_sample_s = stamp_s

    def _on_sigma(self, msg: PointStamped) -> None:
        """focus/offset_sigma: the model's sigma of a frame's offset, kept until that frame is decided."""
        ns = stamp_ns(msg.header.stamp)
        if ns is None:
            return self._malformed_stamp("focus/offset_sigma", msg)
        self._sigmas[ns] = float(msg.point.z)
        self._sigma_expected = True
        while len(self._sigmas) > 32:
            self._sigmas.pop(min(self._sigmas))
        self._answer_if_complete(ns)

    def _on_offset(self, msg: PointStamped) -> None:
        self.offsets_received += 1
        ns = stamp_ns(msg.header.stamp)
        if self.hybrid is None or ns is None:  # a malformed stamp is answered (held by _act), never waited for
            return self._answer(msg, float("nan"))
        for older in [k for k in self._waiting if k < ns]:  # its measure or sigma is late: decide without it
            self._answer_waiting(older)
        self._waiting[ns] = msg
        self._answer_if_complete(ns)

    def _answer_if_complete(self, ns: int) -> None:
        """Decide on a frame once its offset, its measure (when one comes) and its sigma (when they come) are in.

        They arrive on three topics in any order; a sigma that comes last must not find its frame decided as if
        the model were sure.
        """
        if ns not in self._waiting:
            return
        measure_due = ns not in self._measures and self.count_publishers(self._measure_sub.topic_name) > 0
        sigma_due = ns not in self._sigmas and self._sigma_expected
        if not (measure_due or sigma_due):
            self._answer_waiting(ns)

    def _answer_waiting(self, ns: int) -> None:
        """Decide on a waiting frame with what came for it (a missing measure is NaN: the hybrid holds)."""
        if ns not in self._sigmas:
            self._sigma_expected = False  # none came for it (e.g. a model without sigma now): wait again once one does
        self._answer(self._waiting.pop(ns), self._measures.pop(ns, float("nan")))

    def _answer(self, msg: PointStamped, measure_value: float) -> None:
        """Decide on one frame and publish focus/command, the answer to it."""
        if stamp_ns(msg.header.stamp) is not None:  # a stamp no clock made is no fresh offset for the watchdog
            self._last_offset_s = self.now_s()
        position_steps = self.stepper.position_steps
        move_steps = self._act(msg, measure_value)
        command = PointStamped(header=msg.header)
        command.point.x, command.point.y = float(position_steps), float(position_steps + move_steps)
        command.point.z = float(move_steps)
        self.command_pub.publish(command)

    def _act(self, msg: PointStamped, measure_value: float) -> int:
        """Decide on one offset (and, hybrid, its measure) and start the move; returns the steps commanded."""
        if self.stepper.fault:
            self._hold(f"stepper fault: {self.stepper.fault}")
            return 0
        if not self.stepper.enabled:
            self._hold("stepper disabled (service stepper/enable)")
            return 0
        ns = stamp_ns(msg.header.stamp)
        if ns is None:
            self._malformed_stamp("focus/offset", msg)
            self._hold("focus/offset with a malformed header stamp")
            return 0
        stamp_s = stamp_to_s(msg.header.stamp)
        if self.sim_time:
            self._acted_at_s = max(self._acted_at_s, stamp_s + self.params.modelled_latency_s)
        now_s = self.now_s()
        if self.hybrid is None:
            decision = self.controller.update(msg.point.z, stamp_s, now_s, self.stepper.position_steps)
        else:
            offset = msg.point.z if math.isfinite(msg.point.z) else None
            sigma = self._sigmas.pop(ns, None)
            for older in [k for k in self._sigmas if k < ns]:
                del self._sigmas[older]
            decision = self.hybrid.update(offset, sigma if sigma is not None and math.isfinite(sigma) else None,
                                          measure_value, stamp_s, now_s, self.stepper.position_steps)
            self._log_change(decision.change)
            self._sample_tilt(decision, stamp_s)
        self.last_decision = decision
        if not decision.moves:
            self._hold(f"{decision.reason.value}: {decision.detail}")
            if decision.reason.value in PROBLEM_HOLDS:
                self.get_logger().warning(f"hold: {self.last_hold}", throttle_duration_sec=2.0)
            return 0
        try:
            result = self.stepper.move_by(decision.move_steps)
        except StepperError as exc:
            self.law.record_move(now_s)  # nothing moved: accept the next settled frame
            self.get_logger().warning(f"move {decision.move_steps:+d} refused: {exc}", throttle_duration_sec=2.0)
            self._hold(f"stepper refused the move: {exc}")
            return 0
        self.law.record_move(now_s + result.duration_s)
        self.moves += 1
        self.last_hold = ""
        self.get_logger().debug(decision.detail)
        return decision.move_steps

    def _on_stepper_target(self, msg: JointState) -> None:
        """stepper/target: an absolute move for an acquisition; the motor never moves on a bad one."""
        name, stepper = self.params.joint_name, self.stepper
        names = list(msg.name)
        target = msg.position[names.index(name)] if name in names and names.index(name) < len(msg.position) else None
        if target is None:
            refusal = f"no position for joint {name!r}"
        elif not math.isfinite(target):
            refusal = f"target {target} is not finite"
        elif self.law.enabled:
            refusal = "the focus law is enabled; disable it first (service focus/enable)"
        elif not stepper.soft_min_steps <= target <= stepper.soft_max_steps:
            refusal = (f"target {target:g} is outside the soft limits "
                       f"[{stepper.soft_min_steps}, {stepper.soft_max_steps}]")
        else:
            try:
                result = stepper.move_to(target)
            except StepperError as exc:
                refusal = str(exc)
            else:
                self.law.record_move(self.now_s() + result.duration_s)
                self.last_target = f"moving to {result.target_steps}"
                return
        self.last_target = f"refused: {refusal}"
        self.get_logger().warning(f"stepper/target {self.last_target}", throttle_duration_sec=1.0)

    def _tick(self) -> None:
        """joint_states, and a reconnect attempt every ``reconnect_period_s`` while in fault."""
        if self.stepper.fault:
            now = time.monotonic()
            if self._fault_since_s is None:
                self._fault_since_s = self._last_reconnect_s = now
                self.get_logger().error(f"stepper fault, no motion: {self.stepper.fault}")
            if now - self._last_reconnect_s >= self.params.reconnect_period_s:
                self._try_reconnect()
        else:
            self._fault_since_s = None
        msg = JointState(header=Header(stamp=self.get_clock().now().to_msg()), name=[self.params.joint_name],
                         position=[float(self.stepper.position_steps)])
        self.joint_pub.publish(msg)

    def _try_reconnect(self) -> None:
        self._last_reconnect_s = time.monotonic()
        fault = self.stepper.fault
        try:
            self.stepper.reconnect()
        except StepperError as exc:
            self.get_logger().warning(f"stepper fault ({fault}); reconnect failed: {exc}",
                                      throttle_duration_sec=10.0)
            return
        if self.stepper.fault:
            self.get_logger().warning(f"reconnected, still in fault: {self.stepper.fault}",
                                      throttle_duration_sec=10.0)
        else:
            self.law.record_move(self.now_s())  # the position may have changed
            self.get_logger().info(f"stepper reconnected at {self.stepper.position_steps} steps (was: {fault})")

    # ------------------------------------------------------------ services
    def _srv_stepper_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        try:
            self.stepper.enable(request.data)
        except StepperError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = True
        response.message = f"stepper {'enabled' if request.data else 'disabled'} at {self.stepper.position_steps}"
        return response

    def _srv_home(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if not self.is_active:
            response.success, response.message = False, f"{self.lifecycle_state}: activate the node to home"
            return response
        try:
            self.stepper.home()
        except StepperError as exc:
            response.success, response.message = False, f"homing failed: {exc}"
            return response
        self.law.record_move(self.now_s())
        response.success, response.message = True, f"homed; position {self.stepper.position_steps} steps"
        return response

    def _srv_focus_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.law.enable(request.data)
        response.success, response.message = True, f"focus control {'enabled' if request.data else 'disabled'}"
        return response

    # ------------------------------------------------------------ diagnostics
    def state(self) -> tuple[int, str]:
        """(DiagnosticStatus level, one line saying what the controller does and why)."""
        if self.stepper is None or not self.is_active:
            return DiagnosticStatus.WARN, f"{self.lifecycle_state} (lifecycle): no motion"
        if self.stepper.fault:
            return DiagnosticStatus.ERROR, f"fault, no motion: {self.stepper.fault}"
        if not self.stepper.enabled:
            return DiagnosticStatus.WARN, "stepper disabled"
        if not self.law.enabled:
            return DiagnosticStatus.OK, "focus control disabled; holding"
        problems = []
        reason = self.last_decision.reason if self.last_decision else None
        if reason is not None and reason.value in PROBLEM_HOLDS and self.last_hold:
            problems.append(f"holding: {self.last_hold}")
        if self._stale():
            problems.append(f"watchdog: no fresh focus/offset for more than "
                            f"{self.params.stale_after_s:g} s; holding")
        if problems:
            return DiagnosticStatus.WARN, "; ".join(problems)
        return DiagnosticStatus.OK, self.last_hold or (self.last_decision.detail if self.last_decision else "")

    def _stale(self) -> bool:
        if self.hybrid is None:
            return self.controller.is_stale(self.now_s())
        return self._last_offset_s is None or self.now_s() - self._last_offset_s > self.params.stale_after_s

    def _report(self) -> Report:
        level, message = self.state()
        d = self.last_decision
        values = {"lifecycle_state": self.lifecycle_state, "focus_enabled": str(self.law.enabled),
                  "control_mode": self.params.control_mode,
                  "moves": str(self.moves), "offsets_received": str(self.offsets_received),
                  "last_reason": d.reason.value if d else "", "last_detail": d.detail if d else "",
                  "last_target": self.last_target}
        if self.stepper is not None:
            values.update({
                "position_steps": str(self.stepper.position_steps), "moving": str(self.stepper.moving),
                "stepper_enabled": str(self.stepper.enabled), "fault": self.stepper.fault or "",
                "soft_limits_steps": f"[{self.stepper.soft_min_steps}, {self.stepper.soft_max_steps}]",
            })
        if self.hybrid is not None:
            c = self.last_mode_change
            slope = self.tilt.slope_steps_per_px()
            values.update(mode=self.hybrid.mode.value, strikes=str(self.hybrid.strikes),
                          cnn_bias_steps=f"{self.hybrid.cnn_bias_steps:+.1f}",
                          target_switches=str(self.target_switches),
                          plate_tilt_steps_per_px="" if slope is None else f"{slope[0]:+.4f}, {slope[1]:+.4f}",
                          last_mode_change=f"{c.previous.value} -> {c.mode.value} ({c.reason.value}): {c.detail}"
                          if c else "")
        values.update({f"count_{k}": str(v) for k, v in self.law.counts.items() if v})
        return level, message, values


def main(args: list[str] | None = None) -> int:
    return run_node(StepperControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
