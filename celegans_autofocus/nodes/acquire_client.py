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

"""The rclpy side of ``celegans-autofocus acquire``: sweep the focus motor through the running nodes, record a stack.

A short-lived client node, not a node of the launch: it uses what the running graph offers, so the same code
drives the simulated, GPIO and GRBL steppers and any camera.

- ``stepper_controller_node``: its parameters (soft limits, joint name, speed), its ``/diagnostics`` status
  (fault, enabled, lifecycle, focus law), ``stepper/joint_states`` (where the lens is), ``stepper/target``
  (absolute moves) and ``focus/enable`` (the focus law is off during the sweep and restored after).
- ``camera/image_raw`` (camera_node, or stack_player_node in simulation); optionally ``worm/crop`` and
  ``worm/target`` of worm_detector_node.

Before anything moves or is written it refuses: a stepper in fault, disabled or inactive, a sweep beyond the
soft limits, a silent camera, a stack name already used. The sweep is planned around the lens position read
once the focus law is off (so the law cannot move the lens after it is read). During the sweep a fault, a
refused move or a camera that goes silent stop it; Ctrl-C too. Every image taken is kept
(:class:`core.dataset.sweep.SweepRecording`), the lens goes back to where it started and the focus law is
restored; ``resume`` takes the missing positions (with ``crops``, also those whose crop is missing). With
``crops`` the stack is complete once every position has its frame and its crop.
Frames are chosen by :mod:`core.acquisition`'s settled-frame rule, as ``bag-to-dataset`` does on a bag.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import SetBool

from ..core.acquisition import DEFAULT_SETTLE_S, AcquireError, Rest, RestTracker, SweepPlan
from ..core.dataset.crops import CROP_TAG
from ..core.dataset.layout import stack_dir
from ..core.dataset.sweep import SweepRecording, utc_now
from ..core.images import ImageError
from ..core.sensor import STEP_UM
from .common import image_to_gray, matched_qos, reliable_qos, stamp_ns

STEPPER_STATUS = "focus stepper"  # the stepper node's /diagnostics status: "<node>: focus stepper"
STEPPER_PARAMS = ("backend", "joint_name", "soft_min_steps", "soft_max_steps", "max_speed_steps_per_s",
                  "backlash_steps", "approach", "step_um", "diagnostics_period_s")
TRACKED = "_tracked"  # crop stacks of the detector's crops: <stack>__crop<fov>_tracked


@dataclass
class AcquireRequest:
    """What to record: ``range_steps``/``step_steps`` None on resume (the stored plan), else required."""

    dataset: Path
    plate: str
    stack: str
    range_steps: int | None = None
    step_steps: int | None = None
    resume: bool = False
    settle_s: float = DEFAULT_SETTLE_S
    crops: bool = False
    timeout_s: float = 5.0
    um_per_px: float | None = None


@dataclass
class AcquireResult:
    path: Path
    taken: int
    total: int
    complete: bool
    returned_to_steps: int | None
    crops_path: Path | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class StepperStatus:
    level: int
    message: str
    values: dict[str, str]


def _keep(by_stamp_ns: dict, msg, limit: int) -> None:
    """Keep ``msg`` under its stamp, the newest ``limit`` of them; a stamp no clock makes is dropped."""
    ns = stamp_ns(msg.header.stamp)
    if ns is None:
        return
    by_stamp_ns[ns] = msg
    while len(by_stamp_ns) > limit:
        by_stamp_ns.pop(min(by_stamp_ns))


class AcquireClient(Node):
    """Sweeps the focus motor and records the frames; call :meth:`acquire` with the node on an executor."""

    NODE_NAME = "acquire"

    def __init__(self, stepper_node: str = "stepper_controller_node", image_topic: str = "camera/image_raw",
                 **kwargs) -> None:
        super().__init__(self.NODE_NAME, **kwargs)
        ns = self.get_namespace().rstrip("/")
        self.stepper_fqn = stepper_node if stepper_node.startswith("/") else f"{ns}/{stepper_node}"
        self.image_topic = image_topic
        self.joint_name = ""
        self.tracker = RestTracker()
        self.joint_samples = 0                    # focus-joint samples taken by the tracker
        self.frames: dict[int, Image] = {}        # stamp ns -> frame, since the current move began
        self.crops: dict[int, Image] = {}         # stamp ns -> worm/crop
        self.worm_targets: dict[int, PointStamped] = {}
        self.status: StepperStatus | None = None
        self._moving_to: int | None = None        # the last target sent, until the lens is seen there at rest
        self._subs: dict[str, object] = {}  # topic -> subscription, made once its publishers are known
        self.create_subscription(JointState, "stepper/joint_states", self._on_joints, reliable_qos(depth=100))
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable_qos(depth=20))
        self.target_pub = self.create_publisher(JointState, "stepper/target", reliable_qos())
        self.focus_client = self.create_client(SetBool, "focus/enable")

    # ------------------------------------------------------------ callbacks
    def _on_joints(self, msg: JointState) -> None:
        names, ns = list(msg.name), stamp_ns(msg.header.stamp)
        if ns is not None and self.joint_name in names and names.index(self.joint_name) < len(msg.position):
            if self.tracker.add(ns, msg.position[names.index(self.joint_name)]):
                self.joint_samples += 1

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name in (f"{self.stepper_fqn}: {STEPPER_STATUS}",
                          f"{self.stepper_fqn.rsplit('/', 1)[-1]}: {STEPPER_STATUS}"):
                self.status = StepperStatus(s.level[0] if isinstance(s.level, bytes) else int(s.level), s.message,
                                            {kv.key: kv.value for kv in s.values})

    def _on_image(self, msg: Image) -> None:
        _keep(self.frames, msg, 16)  # full frames: a few seconds' worth at most

    def _on_crop(self, msg: Image) -> None:
        _keep(self.crops, msg, 64)

    def _on_worm_target(self, msg: PointStamped) -> None:
        _keep(self.worm_targets, msg, 64)

    def _subscribe(self, topic: str, cls: type, callback: Callable) -> None:
        """Subscribe once, with QoS that loses nothing from the publishers there are (:func:`matched_qos`)."""
        if topic not in self._subs:
            self._subs[topic] = self.create_subscription(cls, topic, callback, matched_qos(self, topic, 10))

    # ------------------------------------------------------------ waiting
    def spin_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Spin this node's executor until ``predicate()`` (True) or ``timeout_s`` of wall time (False)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def _call(self, client, request, what: str, timeout_s: float):
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise AcquireError(f"{what}: service {client.srv_name} not found within {timeout_s:g} s; is "
                               f"{self.stepper_fqn} running (and in this namespace)?")
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout_s) or future.result() is None:
            raise AcquireError(f"{what}: no answer from {client.srv_name} within {timeout_s:g} s")
        return future.result()

    def node_parameters(self, node_fqn: str, names: list[str] | None, timeout_s: float) -> dict[str, Any]:
        """Parameters of another node (all when ``names`` is None), as Python values; unset ones left out."""
        if names is None:
            listed = self._call(self.create_client(ListParameters, f"{node_fqn}/list_parameters"),
                                ListParameters.Request(), f"parameters of {node_fqn}", timeout_s)
            names = sorted(n for n in listed.result.names if not n.startswith("qos_overrides."))
        client = self.create_client(GetParameters, f"{node_fqn}/get_parameters")
        reply = self._call(client, GetParameters.Request(names=names), f"parameters of {node_fqn}", timeout_s)
        if len(reply.values) == len(names):
            values = {n: parameter_value_to_python(v) for n, v in zip(names, reply.values)}
        else:  # one unset parameter (an empty array declared by type) empties the whole answer: ask one by one
            values = {}
            for name in names:
                one = self._call(client, GetParameters.Request(names=[name]), f"parameters of {node_fqn}", timeout_s)
                values.update({name: parameter_value_to_python(v) for v in one.values})
        return {n: list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v
                for n, v in values.items() if v is not None}

    # ------------------------------------------------------------ checks
    def stepper_settings(self, timeout_s: float) -> dict[str, Any]:
        settings = self.node_parameters(self.stepper_fqn, list(STEPPER_PARAMS), timeout_s)
        missing = {"joint_name", "soft_min_steps", "soft_max_steps"} - set(settings)
        if missing:
            raise AcquireError(f"{self.stepper_fqn} has no parameter {', '.join(sorted(missing))}: "
                               "is it a stepper_controller_node?")
        self.joint_name = settings["joint_name"]
        return settings

    def check_stepper(self, timeout_s: float) -> StepperStatus:
        """Refuse a stepper that is not ready to move: no status, inactive, in fault, disabled (a fresh status)."""
        self.status = None
        if not self.spin_until(lambda: self.status is not None, timeout_s):
            raise AcquireError(f"no /diagnostics status from {self.stepper_fqn} within {timeout_s:g} s")
        v = self.status.values
        if v.get("lifecycle_state", "active") != "active":
            raise AcquireError(f"stepper {self.stepper_fqn} is {v['lifecycle_state']} (lifecycle): activate it first")
        if v.get("fault"):
            raise AcquireError(f"stepper in fault: {v['fault']}; clear it (stepper/home, or fix the hardware and let "
                               "it reconnect) first")
        if v.get("stepper_enabled") == "False":
            raise AcquireError("stepper is disabled: enable it first (service stepper/enable)")
        return self.status

    def wait_lens(self, timeout_s: float) -> Rest:
        if not self.spin_until(lambda: self.tracker.current is not None, timeout_s):
            raise AcquireError(f"no stepper/joint_states for joint {self.joint_name!r} within {timeout_s:g} s: is "
                               f"{self.stepper_fqn} active?")
        return self.tracker.current

    def check_camera(self, timeout_s: float, crops: bool) -> Image:
        """Subscribe to the camera (and crops) with QoS that loses nothing; refuse a silent camera."""
        topic = self.resolve_topic_name(self.image_topic)
        if not self.spin_until(lambda: self.count_publishers(topic) > 0, timeout_s):
            raise AcquireError(f"camera silent: nothing publishes {topic} (is the camera node running?)")
        self._subscribe(topic, Image, self._on_image)
        wanted = ((self.resolve_topic_name("worm/crop"), Image, self._on_crop),
                  (self.resolve_topic_name("worm/target"), PointStamped, self._on_worm_target))
        for name, cls, callback in wanted if crops else ():
            if not self.spin_until(lambda: self.count_publishers(name) > 0, timeout_s):
                raise AcquireError(f"crops asked for, but nothing publishes {name} (is worm_detector_node running?)")
            self._subscribe(name, cls, callback)
        self.frames.clear()  # a frame from before this check says nothing about the camera now
        if not self.spin_until(lambda: bool(self.frames), timeout_s):
            raise AcquireError(f"camera silent: no frame on {topic} within {timeout_s:g} s")
        return self.frames[max(self.frames)]

    def camera_settings(self, frame: Image, timeout_s: float) -> dict[str, Any]:
        """Return the frame's size and encoding, and the parameters of the node that publishes it (if it answers)."""
        topic = self.resolve_topic_name(self.image_topic)
        info: dict[str, Any] = {"topic": topic, "encoding": frame.encoding, "width_px": int(frame.width),
                                "height_px": int(frame.height), "frame_id": frame.header.frame_id}
        publishers = self.get_publishers_info_by_topic(topic)
        if publishers:
            pub = publishers[0]
            node = f"{pub.node_namespace.rstrip('/')}/{pub.node_name}"
            info["node"] = node
            try:
                info["parameters"] = self.node_parameters(node, None, timeout_s)
            except AcquireError as exc:
                info["parameters_error"] = str(exc)
        return info

    def rest_position(self, timeout_s: float) -> int:
        """Return where the lens rests, from samples sent after this call (a move already ordered shows first)."""
        seen = self.joint_samples
        if not self.spin_until(lambda: self.joint_samples > seen and self._at_rest(), timeout_s):
            where = self.tracker.current.position_steps if self.tracker.current else None
            raise AcquireError(f"the lens did not come to rest within {timeout_s:g} s (at {where})")
        return self.tracker.current.position_steps

    # ------------------------------------------------------------ motion
    def move_to(self, z: int, settings: dict, timeout_s: float) -> Rest:
        """Send ``stepper/target`` and wait until the joint reports ``z``; AcquireError on a fault or no arrival.

        A move sent before (e.g. one a Ctrl-C left under way) ends first: a busy stepper refuses a new target.
        """
        self.spin_until(lambda: self._at_rest() and self._moving_to in (None, self.tracker.current.position_steps),
                        timeout_s)
        start = self.tracker.current.position_steps
        if start == z:
            return self.tracker.current
        msg = JointState(name=[self.joint_name], position=[float(z)])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.frames.clear()
        self.crops.clear()
        self._moving_to = z
        self.target_pub.publish(msg)
        speed = float(settings.get("max_speed_steps_per_s", 1.0))
        travel = abs(z - start) + 2 * int(settings.get("backlash_steps", 0))
        fault = lambda: bool(self.status and self.status.values.get("fault"))  # noqa: E731
        # at z and held there: with backlash compensation the lens passes z on its way to the overshoot
        arrived = self.spin_until(lambda: (self.tracker.current.position_steps == z and self._at_rest()) or fault(),
                                  timeout_s + travel / speed)
        self._moving_to = None  # arrived, or it never will: only an interrupted wait leaves the move pending
        if fault():
            raise AcquireError(f"stepper fault while moving to z {z}: {self.status.values['fault']}")
        if not arrived:
            last = self.status.values.get("last_target", "") if self.status else ""
            raise AcquireError(f"the lens did not reach z {z} (it is at {self.tracker.current.position_steps}); "
                               f"stepper says: {last or self.status.message if self.status else 'nothing'}")
        return self.tracker.current

    def _at_rest(self) -> bool:
        """Tell whether the joint reported one position over at least 0.1 s (a target then is not refused as busy)."""
        rest = self.tracker.current
        return rest is not None and rest.end_ns - rest.start_ns >= 100_000_000

    def settled_frame(self, z: int, settle_s: float, timeout_s: float) -> tuple[Rest, int, Image]:
        """Wait for the first frame that shows the lens settled at ``z`` (:mod:`core.acquisition`'s rule).

        When none comes: "camera silent" if no new frame arrived in the second half of the wait (frames still
        in flight from before a camera stopped do not count), else the clocks disagree.
        """
        newest = [max(self.frames, default=-1)]
        last_new_s = [-math.inf]  # monotonic time the newest frame so far arrived

        def found() -> bool:
            rest = self.tracker.current
            if rest.position_steps != z:
                raise AcquireError(f"the lens left z {z} (now {rest.position_steps}) before a frame was taken")
            if self.status and self.status.values.get("fault"):
                raise AcquireError(f"stepper fault at z {z}: {self.status.values['fault']}")
            after = sorted(t for t in self.frames if t >= rest.start_ns + int(round(settle_s * 1e9)))
            if max(self.frames, default=-1) > newest[0]:
                newest[0], last_new_s[0] = max(self.frames), time.monotonic()
            return bool(after) and rest.holds(after[0], settle_s)

        wait_s = timeout_s + settle_s
        if not self.spin_until(found, wait_s):
            if time.monotonic() - last_new_s[0] > wait_s / 2:
                raise AcquireError(f"camera silent: no frame within the last {wait_s / 2:g} s at z {z}")
            raise AcquireError(f"frames arrive but none is stamped while the lens was settled at z {z} (do the "
                               "camera and stepper clocks agree?)")
        rest = self.tracker.current
        stamp = min(t for t in self.frames if rest.holds(t, settle_s))
        return rest, stamp, self.frames[stamp]

    def set_focus_law(self, on: bool, timeout_s: float) -> None:
        reply = self._call(self.focus_client, SetBool.Request(data=on), "focus/enable", timeout_s)
        if not reply.success:
            raise AcquireError(f"focus/enable {on}: {reply.message}")

    # ------------------------------------------------------------ the sweep
    def acquire(self, req: AcquireRequest, progress: Callable[[int, int, int], None] | None = None) -> AcquireResult:
        """Record one stack (see the module docstring); :class:`AcquireError` when refused or stopped."""
        path = stack_dir(req.dataset, req.plate, req.stack)
        existing = SweepRecording.inspect(path, req.resume)      # refuses a used name before anything moves
        settings = self.stepper_settings(req.timeout_s)
        self.wait_lens(req.timeout_s)
        status = self.check_stepper(max(req.timeout_s, 2 * settings.get("diagnostics_period_s", 1.0)))
        frame = self.check_camera(req.timeout_s, req.crops)
        camera = self.camera_settings(frame, req.timeout_s)
        if existing is not None:
            for name, asked in (("range_steps", req.range_steps), ("step_steps", req.step_steps)):
                if asked is not None and asked != existing["sweep"].get(name):
                    raise AcquireError(f"{path}: the unfinished sweep has {name} {existing['sweep'].get(name)}, "
                                       f"not {asked}")
        elif req.range_steps is None or req.step_steps is None:
            raise AcquireError("a new sweep needs its range and step")
        crops = self._crop_recording(req, path) if req.crops else None
        focus_was_on = status.values.get("focus_enabled") == "True"
        if focus_was_on:
            self.set_focus_law(False, req.timeout_s)
        try:  # the law is off: the lens stays where it is read, the sweep is planned around it and returns to it
            start_z = self.rest_position(req.timeout_s)
            if existing is not None:
                plan, centre = SweepPlan.from_meta(existing["sweep"]), existing["sweep"].get("centre_steps")
            else:
                plan, centre = SweepPlan.around(start_z, req.range_steps, req.step_steps), start_z
            plan.check_limits(settings["soft_min_steps"], settings["soft_max_steps"])
            meta = self._meta(req, plan, centre, settings, camera)
            recording = SweepRecording(path, meta, req.resume)
        except BaseException:  # refused before anything moved or was written: the law as it was
            if focus_was_on:
                self.set_focus_law(True, req.timeout_s)
            raise
        problems: list[str] = []
        stopped: str | None = None
        try:
            recording.start()
            if isinstance(crops, SweepRecording):
                crops.start()
            total = len(plan.z_steps)
            # a position is taken again when its frame is missing, or (--crops) its crop: a resumed stack is whole
            crop_missing = set(plan.z_steps if crops is None else crops.missing()) if req.crops else set()
            for z in [z for z in plan.z_steps if z in set(recording.missing()) | crop_missing]:
                self.move_to(z, settings, req.timeout_s)
                rest, stamp, msg = self.settled_frame(z, req.settle_s, req.timeout_s)
                if z not in recording.taken():
                    try:
                        gray = image_to_gray(msg)
                    except ImageError as exc:
                        raise AcquireError(f"frame at z {z} cannot be decoded: {exc}") from None
                    recording.add(z, gray, {"motor_steps": rest.position_steps, "stamp_s": stamp * 1e-9,
                                            "time": utc_now()})
                if z in crop_missing:
                    crops = self._take_crop(crops, req, path, meta, z, rest, problems)
                if progress is not None:
                    progress(len(recording.taken()), total, z)
            if isinstance(crops, SweepRecording):
                crops.finish()
            if not (req.crops and (crops is None or crops.missing())):  # with --crops, complete once both are
                recording.finish()
        except (AcquireError, OSError, ValueError) as exc:  # ValueError: ImageError, StackError
            stopped = str(exc)
        except KeyboardInterrupt:
            stopped = "interrupted (Ctrl-C)"
        returned, return_problem = self._return(start_z, settings, req.timeout_s)
        if focus_was_on:
            try:
                self.set_focus_law(True, req.timeout_s)
            except AcquireError as exc:
                problems.append(f"focus law not re-enabled: {exc}")
        if return_problem:
            problems.insert(0, return_problem)
        taken = len(recording.taken())
        if stopped is not None:
            notes = problems if return_problem else [f"lens back at z {returned}", *problems]
            raise AcquireError(f"{stopped}; kept {taken} of {len(plan.z_steps)} images in {path} (finish them with "
                               f"resume); {'; '.join(notes)}")
        return AcquireResult(path, taken, len(plan.z_steps), bool(recording.meta.get("complete")), returned,
                             crops.path if isinstance(crops, SweepRecording) else None, problems)

    def _return(self, start_z: int, settings: dict, timeout_s: float) -> tuple[int | None, str]:
        try:
            return self.move_to(start_z, settings, timeout_s).position_steps, ""
        except AcquireError as exc:
            where = self.tracker.current.position_steps if self.tracker.current else None
            return None, f"lens NOT returned to z {start_z} (at {where}): {exc}"
        except KeyboardInterrupt:
            return None, f"lens NOT returned to z {start_z}: interrupted"

    def _meta(self, req: AcquireRequest, plan: SweepPlan, centre: int, settings: dict, camera: dict) -> dict:
        meta = {"step_um": float(settings.get("step_um", STEP_UM)), "plate": req.plate, "stack": req.stack,
                "acquired_by": "celegans-autofocus acquire",
                "sweep": {**plan.to_meta(), "centre_steps": centre, "range_steps": centre - plan.first_steps,
                          "settle_s": float(req.settle_s)},
                "stepper": {"node": self.stepper_fqn, **settings}, "camera": camera}
        if req.um_per_px is not None:
            meta["um_per_px"] = float(req.um_per_px)
        return meta

    # ------------------------------------------------------------ crops
    def _crop_recording(self, req: AcquireRequest, path: Path) -> SweepRecording | None:
        """Return the crop stack to resume (found by name), or None until the first crop tells its size."""
        found = sorted(path.parent.glob(f"{path.name}{CROP_TAG}*{TRACKED}"))
        if found and req.resume:
            return SweepRecording(found[0], {}, resume=True)
        if found:
            raise AcquireError(f"{found[0]} exists; choose another stack name")
        return None

    def _take_crop(self, crops: SweepRecording | None, req: AcquireRequest, path: Path, meta: dict, z: int,
                   rest: Rest, problems: list[str]) -> SweepRecording | None:
        """Record the detector's crop of a settled frame at ``z`` in which it saw the worm (waits up to the timeout).

        A crop the detector placed from memory (``frames_since_seen`` > 0, e.g. the previous field's window just
        after a stage move) may not hold the worm, so it is never recorded.
        """
        def ready() -> list[int]:
            return sorted(t for t in self.crops if rest.holds(t, req.settle_s) and t in self.worm_targets
                          and int(self.worm_targets[t].point.z) == 0)

        if not self.spin_until(lambda: bool(ready()), req.timeout_s):
            problems.append(f"no worm/crop of a settled frame with the worm seen at z {z}: crop not recorded")
            return crops
        stamp = ready()[0]
        msg, target = self.crops[stamp], self.worm_targets[stamp]
        if crops is None:
            fov = int(msg.width)
            crop_meta = {**meta, "parent": path.name, "fov_px": fov, "stack": f"{path.name}{CROP_TAG}{fov}{TRACKED}"}
            crop_meta.pop("camera", None)
            crops = SweepRecording(path.parent / crop_meta["stack"], crop_meta)
            crops.start()
        crops.add(z, image_to_gray(msg), {"motor_steps": rest.position_steps, "stamp_s": stamp * 1e-9,
                                          "centre_px": [float(target.point.x), float(target.point.y)],
                                          "frames_since_seen": int(target.point.z), "time": utc_now()})
        return crops
