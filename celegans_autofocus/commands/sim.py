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

"""``celegans-autofocus sim``: the closed loop in one process, for machines without ``ros2 launch``.

The simulated microscope (stack_player_node rendering a synthetic plate at the motor's z, with a
drifting best plane), worm_detector_node, focus_predictor_node and stepper_controller_node run as
ROS 2 nodes in one process (the camera on one single-threaded executor, the pipeline on another:
benchmarks/sim_executors.md), talking over their usual topics. ``--clock sim`` (the default): the player
drives ``/clock`` lock-stepped with the pipeline and every other node uses ``use_sim_time``; a frame's decision
is taken at its stamp + the modelled latency, so the same seed gives the same episode on any machine and under
any load. ``--clock wall``: real time, for latency and throughput figures. A metrics node of this command matches
every ``sim/ground_truth`` with the ``focus/offset`` of the same frame and reports the episode with
:func:`core.closed_loop.summarize_episode`; wall-clock figures go under the summary's ``wall`` key.
Optionally a PNG timeline, a JSON summary and a rosbag2 bag (bag_recorder_node, MCAP by default).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.metrics import IN_FOCUS_STEPS
from ..core.sensor import FULL_FRAME_WH_PX

HELP = "closed-loop simulation: player, detector, predictor and controller nodes in one process"

MIN_FRAME_HEIGHT_PX = 64
BAG_TOPICS = ["camera/image_raw", "worm/crop", "focus/offset", "focus/offset_sigma", "focus/command",
              "stepper/joint_states", "sim/ground_truth", "worm/target"]
EXECUTORS = ("split", "single", "multi", "events")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("episode")
    g.add_argument("--params", type=Path, default=None, metavar="YAML",
                   help="ROS 2 parameter file of the simulated system (default: the package's config/sim.yaml, "
                        "as sim.launch.py uses); the options below override only what they name")
    g.add_argument("--clock", choices=["sim", "wall"], default="sim",
                   help="sim: the player drives /clock lock-stepped with the pipeline, the same result on any "
                        "machine (latency is --latency-ms); wall: real time, for latency and fps figures")
    g.add_argument("--duration", type=float, default=20.0, metavar="SECONDS",
                   help="episode length, in the clock's time")
    g.add_argument("--frames", type=int, default=0, metavar="N",
                   help="end after N camera frames instead of --duration (on the wall clock robust to a stalled "
                        "machine: the episode takes longer, never fewer frames)")
    g.add_argument("--latency-ms", type=float, metavar="MS",
                   help="sim clock: modelled time from a frame's stamp to the controller's decision, less than one "
                        "frame period (controller's modelled_latency_s)")
    g.add_argument("--start-offset", type=float, metavar="STEPS",
                   help="best plane minus lens z at t = 0 (steps to focus; 1 step = 5 um; player's start_best_z_steps)")
    g.add_argument("--seed", type=int, help="scene, noise and drift seed")
    g.add_argument("--fps", type=float, help="camera frame rate")
    g.add_argument("--drift", type=float, metavar="STEPS_PER_S",
                   help="best-plane drift (plate tilt while the worm crawls)")
    g.add_argument("--random-walk", type=float, metavar="STEPS_PER_SQRT_S", help="random walk of the best plane")
    g.add_argument("--switch", type=float, nargs=2, action="append", metavar=("T_S", "JUMP_STEPS"),
                   help="at T_S the target switches to a worm JUMP_STEPS away in z (repeatable; replaces the "
                        "parameter file's switches)")
    g.add_argument("--n-worms", type=int, help="worms on the simulated plate")
    g.add_argument("--frame-height", type=int, default=0, metavar="PX",
                   help="simulated camera frame height; the width keeps the 4:3 sensor (0 = the parameter file's "
                        "for a crop model; for a full-frame model its input side, as training renders full frames, "
                        f"at least {MIN_FRAME_HEIGHT_PX})")
    g = parser.add_argument_group("model and control")
    g.add_argument("--model", type=Path, default=None,
                   help="ONNX model (default: the parameter file's, else the bundled models/default.onnx)")
    g.add_argument("--input", choices=["full", "crop"], default=None,
                   help="predict on the full frame or on the detector's worm crop (default: the view the model "
                        "was trained on, its metadata's input_view)")
    g.add_argument("--fov", type=int, metavar="PX", help="detector crop side in full-frame px")
    g.add_argument("--threads", type=int,
                   help="ONNX Runtime intra-op threads (0 = one per core; 1, the parameter file's, gives the same "
                        "numbers on any machine)")
    g.add_argument("--executor", choices=EXECUTORS, default="split",
                   help="rclpy executors: split = the camera (player) and the pipeline on two single-threaded "
                        "executors in two threads, as on a microscope; single, multi, events = all nodes on one "
                        "(benchmarks/sim_executors.md)")
    g.add_argument("--control", choices=["cnn", "hybrid"],
                   help="controller: cnn = the one-shot law; hybrid = jump on the CNN, verify with the focus "
                        "measure, refine, fall back to search (controller's control_mode)")
    g.add_argument("--max-speed", type=float, metavar="STEPS_PER_S", help="focus motor speed")
    g.add_argument("--deadband", type=float, metavar="STEPS",
                   help="control-law deadband: hold while |median prediction| is within it")
    g = parser.add_argument_group("output")
    g.add_argument("--summary-json", type=Path, default=None, metavar="PATH", help="write the metrics as JSON")
    g.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="timeline of the true best plane, lens z and predictions")
    g.add_argument("--record", type=Path, default=None, metavar="BAG", help="record a rosbag2 bag (a new directory)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --record bag")
    g.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="bag storage")
    g.add_argument("--image-scale", type=float, default=1.0,
                   help="downscale recorded images by this factor (1.0 keeps them as the model saw them)")
    g.add_argument("--namespace", default="", help="ROS namespace of all nodes ('' = root)")
    g.add_argument("--verbose", action="store_true", help="show the nodes' INFO logs")


#: option -> (node, parameter, conversion): what each option overrides in the parameter file
OVERRIDES = {
    "start_offset": ("stack_player_node", "start_best_z_steps", float),
    "seed": ("stack_player_node", "seed", int),
    "fps": ("stack_player_node", "fps", float),
    "drift": ("stack_player_node", "drift_steps_per_s", float),
    "random_walk": ("stack_player_node", "random_walk_steps_per_sqrt_s", float),
    "n_worms": ("stack_player_node", "n_worms", int),
    "fov": ("worm_detector_node", "fov_px", int),
    "threads": ("focus_predictor_node", "intra_op_threads", int),
    "control": ("stepper_controller_node", "control_mode", str),
    "max_speed": ("stepper_controller_node", "max_speed_steps_per_s", float),
    "deadband": ("stepper_controller_node", "deadband_steps", float),
    "latency_ms": ("stepper_controller_node", "modelled_latency_s", lambda ms: float(ms) / 1000.0),
}
NODES = ("stack_player_node", "worm_detector_node", "focus_predictor_node", "stepper_controller_node")


def system_params(args: argparse.Namespace) -> dict[str, dict]:
    """Return each node's parameters: the parameter file's, then what the options name.

    :class:`SimError` if the file cannot be read.
    """
    from ..core.package_files import package_file
    from ..nodes.common import ConfigError, params_from_file

    path = args.params
    if path is None:
        path, looked_in = package_file("config", "sim.yaml")
        if path is None:
            raise SimError("config/sim.yaml not found; looked in: " + ", ".join(map(str, looked_in)))
    try:
        system = {node: params_from_file(path, node) for node in NODES}
    except ConfigError as exc:
        raise SimError(str(exc)) from None
    for option, (node, name, convert) in OVERRIDES.items():
        if getattr(args, option) is not None:
            system[node][name] = convert(getattr(args, option))
    if args.switch is not None:
        switches = sorted(args.switch)
        system["stack_player_node"].update(switch_times_s=[float(t) for t, _ in switches],
                                           switch_jumps_steps=[float(j) for _, j in switches])
    if args.model is not None:
        system["focus_predictor_node"]["model_path"] = str(args.model)
    if args.input is not None:
        system["focus_predictor_node"]["input"] = args.input
    return system


def _check(args: argparse.Namespace) -> str | None:
    """Return the first bad option value, as a message for the user, or None."""
    if not (math.isfinite(args.duration) and args.duration > 0):
        return f"--duration must be > 0 s, got {args.duration}"
    if args.frames < 0:
        return f"--frames must be >= 0 (0 = use --duration), got {args.frames}"
    if args.fps is not None and not (math.isfinite(args.fps) and 0 < args.fps <= 200):
        return f"--fps must be in (0, 200], got {args.fps}"
    if args.latency_ms is not None and not (math.isfinite(args.latency_ms) and args.latency_ms >= 0):
        return f"--latency-ms must be >= 0, got {args.latency_ms}"
    if args.start_offset is not None and not (math.isfinite(args.start_offset) and abs(args.start_offset) <= 1000):
        return f"--start-offset must be within +-1000 steps (the soft limits), got {args.start_offset}"
    if args.params is not None and not args.params.is_file():
        return f"parameter file not found: {args.params}"
    if not (0 < args.image_scale <= 1):
        return f"--image-scale must be in (0, 1], got {args.image_scale}"
    if args.frame_height and not 24 <= args.frame_height <= FULL_FRAME_WH_PX[1]:
        return f"--frame-height must be 0 (auto) or in [24, {FULL_FRAME_WH_PX[1]}], got {args.frame_height}"
    if args.model is not None and not args.model.is_file():
        return f"model file not found: {args.model}"
    if args.record is not None and args.record.exists():
        if not args.overwrite:
            return f"bag {args.record} already exists; choose a new --record path or add --overwrite"
        if not (args.record / "metadata.yaml").is_file():
            return f"--overwrite replaces only a rosbag2 bag, and {args.record} has no metadata.yaml"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        print(f"celegans-autofocus sim: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from ..core.predictor import FocusPredictor, ModelError, default_model_path, input_view

    try:
        system = system_params(args)
        model = Path(system["focus_predictor_node"].get("model_path") or default_model_path())
        predictor = FocusPredictor(model, providers=["CPUExecutionProvider"])
        view = input_view(system["focus_predictor_node"].get("input", "auto"), predictor.metadata)
        system["focus_predictor_node"].update(model_path=str(model), input=view)
        _set_frame_size(system["stack_player_node"], args.frame_height, predictor.spec.input_px, view)
        problem = _view_problem(system, predictor.spec.input_px, view)
        if problem:
            raise SimError(problem)
        episode = Episode.of(args, system)
    except (SimError, ModelError) as exc:
        print(f"celegans-autofocus sim: {exc}", file=sys.stderr)
        return 2
    if args.record is not None and args.record.exists():
        shutil.rmtree(args.record)  # a rosbag2 bag (checked above) and --overwrite was given
    if args.record is not None:
        args.record.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = run_episode(args, system, episode)
    except SimError as exc:
        print(f"celegans-autofocus sim: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result.summary))
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(result.summary, indent=2) + "\n")
        print(f"summary: {args.summary_json}")
    if args.plot is not None:
        from ..plots import plot_focus_timeline

        trace, s = result.trace, result.summary
        title = (f"Closed-loop CNN autofocus (sim, {model.name}): start offset {s['start_offset_steps']:+g} "
                 f"steps, drift {s['drift_steps_per_s']:g} steps/s, seed {s['seed']}")
        written = plot_focus_timeline(trace["t_s"], trace["true_best_z_steps"], trace["lens_z_steps"],
                                      trace["predicted_best_z_steps"], args.plot, title=title)
        print(f"plot: {written}")
    if args.record is not None:
        print(f"bag: {args.record} ({args.storage})")
    return 130 if result.summary["interrupted"] else 0


def _set_frame_size(player: dict, requested_height_px: int, input_px: int, view: str) -> None:
    """Set the simulated frame size.

    As asked; else for a full-frame model its input side (training renders full frames at the model's size,
    at least MIN_FRAME_HEIGHT_PX); else the parameter file's. 4:3 unless the file's.
    """
    height = requested_height_px or (min(FULL_FRAME_WH_PX[1], max(MIN_FRAME_HEIGHT_PX, input_px))
                                     if view == "full" else None)
    if height:
        player.update(frame_height_px=height, frame_width_px=round(height * FULL_FRAME_WH_PX[0] / FULL_FRAME_WH_PX[1]))


def _view_problem(system: dict[str, dict], input_px: int, view: str) -> str | None:
    """Return why the simulated frames would give the model no view it reads (``core.images.check_view``), or None."""
    from ..core.detection import frame_fov_px
    from ..core.images import min_view_px
    from ..nodes.stack_player_node import PARAMS as PLAYER_PARAMS
    from ..nodes.worm_detector_node import PARAMS as DETECTOR_PARAMS

    player = {**{p.name: p.default for p in PLAYER_PARAMS}, **system["stack_player_node"]}
    detector = {**{p.name: p.default for p in DETECTOR_PARAMS}, **system["worm_detector_node"]}
    width_px, height_px = int(player["frame_width_px"]), int(player["frame_height_px"])
    side_px = min(width_px, height_px)
    crop_px = frame_fov_px(detector["fov_px"], detector["full_width_px"], width_px) if view == "crop" else None
    if crop_px is not None:  # the detector's crop, cut to the frame
        side_px = min(side_px, crop_px)
    if side_px < min_view_px(input_px):
        return (f"{width_px}x{height_px} px frames give the model a {side_px} px view, under the "
                f"{min_view_px(input_px)} px its {input_px} px input reads: raise --frame-height")
    return None


@dataclass(frozen=True)
class Episode:
    """What the run is: clock, frames, rate and modelled latency (from the options and the parameter file)."""

    clock: str
    n_frames: int
    fps: float
    latency_ms: float

    @classmethod
    def of(cls, args: argparse.Namespace, system: dict[str, dict]) -> "Episode":
        fps = float(system["stack_player_node"].get("fps", 15.0))
        latency_ms = 1000.0 * float(system["stepper_controller_node"].get("modelled_latency_s", 0.0))
        if not 0 < fps <= 200:
            raise SimError(f"fps must be in (0, 200], got {fps}")
        if args.clock == "sim" and not 0 <= latency_ms < 1000.0 / fps:
            raise SimError(f"the modelled latency (--latency-ms, modelled_latency_s) must be in [0, one frame "
                           f"period = {1000.0 / fps:.1f} ms), got {latency_ms:g} ms")
        n_frames = args.frames or max(1, round(args.duration * fps))
        return cls(args.clock, n_frames, fps, latency_ms if args.clock == "sim" else 0.0)


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def format_summary(s: dict) -> str:
    """Format the summary table printed at the end of a run."""
    wall = s["wall"]
    clock = ("simulated clock (the same on any machine): " if s["clock"] == "sim" else "wall clock (real time): ")
    rows = [
        ("clock", clock + f"{wall['elapsed_s']:.1f} s of wall time, {_fmt(wall['fps'], ' fps')} real time"),
        ("frames", f"{s['n_frames']} in {s['duration_s']:.1f} s ({s['fps']:.1f} fps); "
                   f"{s['n_predictions']} predicted, {s['frames_dropped']} dropped by the predictor"
                   + (f", {s['frames_unanswered']} unanswered" if s["frames_unanswered"] else "")),
        ("start offset", _fmt(s["start_offset_steps"], " steps", 0)),
        ("frames to focus", _fmt(s["frames_to_focus"]) + ("" if s["frames_to_focus"] is None else
                                                          f" ({s['time_to_focus_s']:.2f} s)")),
        ("final error", _fmt(s["final_error_steps"], " steps")),
        ("steady |error| (median)", _fmt(s["steady_abs_error_steps"], " steps")),
        (f"in focus (|error| <= {IN_FOCUS_STEPS:g})",
         f"{100 * s['in_focus_fraction']:.1f} % of all frames, "
         f"{100 * s['in_focus_fraction_tracking']:.1f} % after reaching focus"),
        ("latency", f"{_fmt(s['modelled_latency_ms'], ' ms')} modelled (image stamp -> decision); measured "
                    f"{_fmt(wall['latency_p50_ms'])} / {_fmt(wall['latency_p95_ms'], ' ms')} p50 / p95 "
                    "(frame published -> focus/offset)" if s["clock"] == "sim" else
                    f"{_fmt(s['latency_p50_ms'])} / {_fmt(s['latency_p95_ms'], ' ms')} p50 / p95 "
                    "(image stamp -> focus/offset)"),
        ("motor", f"{s['moves']} moves, {_fmt(s['steps_travelled'], ' steps', 0)} travelled"),
        ("model", s["model"]),
    ]
    width = max(len(k) for k, _ in rows)
    title = "Closed-loop simulation" + (" (interrupted)" if s.get("interrupted") else "")
    lines = ["", title, "-" * len(title)] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- the episode

class SimError(RuntimeError):
    """The simulation could not start or run (bad configuration, no frames); the message says why."""


@dataclass
class SimResult:
    summary: dict
    trace: dict[str, list[float]]


def _metrics_node_class():
    """Define EpisodeMetrics on first use so that importing this module does not import rclpy."""
    from geometry_msgs.msg import PointStamped
    from rclpy.node import Node

    from ..nodes.common import reliable_qos

    class EpisodeMetrics(Node):
        """Pair each frame's ground truth with the focus/offset predicted from it (same header stamp).

        Stamps are on the episode's clock; the receive times are wall time (``time.monotonic``), so the
        wall latency (truth received -> offset received) is measured on either clock.
        """

        def __init__(self, **kwargs):
            super().__init__("sim_metrics", **kwargs)
            self.truth: dict[int, tuple[float, float, float]] = {}     # stamp ns -> (lens, best, offset)
            self.offsets: dict[int, float] = {}                        # stamp ns -> predicted offset
            self.truth_wall_s: dict[int, float] = {}
            self.offset_wall_s: dict[int, float] = {}
            self.stamp_latency_ms: dict[int, float] = {}              # wall clock: node now - image stamp
            self.first_ns: int | None = None
            self.last_t_s = 0.0
            self.create_subscription(PointStamped, "sim/ground_truth", self._on_truth, reliable_qos(depth=50))
            self.create_subscription(PointStamped, "focus/offset", self._on_offset, reliable_qos(depth=50))

        @staticmethod
        def _ns(msg) -> int:
            return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

        def _on_truth(self, msg) -> None:
            ns = self._ns(msg)
            if self.first_ns is None:
                self.first_ns = ns
            self.truth_wall_s[ns] = time.monotonic()
            self.truth[ns] = (msg.point.x, msg.point.y, msg.point.z)
            self.last_t_s = (ns - self.first_ns) * 1e-9

        def _on_offset(self, msg) -> None:
            ns = self._ns(msg)
            self.offset_wall_s[ns] = time.monotonic()
            self.stamp_latency_ms[ns] = (self.get_clock().now().nanoseconds - ns) * 1e-6
            self.offsets[ns] = msg.point.z

    return EpisodeMetrics


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_quiet(count, quiet_s: float = 0.2, timeout_s: float = 3.0) -> None:
    """Wait until ``count()`` has not changed for ``quiet_s`` (at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.02)
        if count() != last:
            last, since = count(), time.monotonic()


def _make_executor(kind: str, context):
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    if kind == "events":  # rclpy.experimental: its timers never fired here (benchmarks/sim_executors.md)
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=4, context=context)
    return SingleThreadedExecutor(context=context)


def _ros_args(args: argparse.Namespace) -> list[str]:
    """Return the rclpy arguments of the episode's context.

    Log level, and /clock kept inside the namespace so that episodes in other namespaces of the same ROS
    domain keep their own time.
    """
    ros_args = ["--ros-args", "--log-level", "info" if args.verbose else "warn"]
    if args.namespace:
        ros_args += ["-r", f"/clock:=/{args.namespace.strip('/')}/clock"]
    return ros_args


def _stop(executor, camera_executor, spinners: list[threading.Thread]) -> None:
    """Shut the executors down and wait for their threads, before any node is destroyed."""
    for e in dict.fromkeys([camera_executor, executor]):
        e.shutdown()
    for spinner in spinners:
        if spinner.is_alive():
            spinner.join(timeout=5.0)


def run_episode(args: argparse.Namespace, system: dict[str, dict], episode: Episode) -> SimResult:
    """Run one episode and collect the metrics.

    Start the nodes of ``system`` (parameters per node) and play ``episode.n_frames`` frames on the chosen
    clock (on the wall clock and without --frames: ``args.duration`` seconds).
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from ..nodes.bag_recorder_node import BagRecorderNode
    from ..nodes.common import ConfigError, construct
    from ..nodes.focus_predictor_node import FocusPredictorNode
    from ..nodes.stack_player_node import StackPlayerNode
    from ..nodes.stepper_controller_node import StepperControllerNode
    from ..nodes.worm_detector_node import WormDetectorNode

    sim_clock = episode.clock == "sim"
    n_frames = episode.n_frames
    context = Context()
    rclpy.init(args=_ros_args(args), context=context)
    executor = _make_executor(args.executor, context)
    camera_executor = _make_executor("single", context) if args.executor == "split" else executor
    nodes = []

    def make(cls, use_sim_time: bool = sim_clock, **params):
        params = {**system.get(getattr(cls, "NODE_NAME", ""), {}), **params}
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        overrides.append(Parameter("use_sim_time", value=use_sim_time))
        node = construct(cls, namespace=args.namespace, context=context, parameter_overrides=overrides)
        nodes.append(node)
        return node

    spinners = [threading.Thread(target=e.spin, name=f"sim_executor_{i}", daemon=True)
                for i, e in enumerate(dict.fromkeys([executor, camera_executor]))]
    try:
        try:
            controller = make(StepperControllerNode, backend="simulated",
                              modelled_latency_s=episode.latency_ms / 1000.0)
            predictor = make(FocusPredictorNode)
            detector = make(WormDetectorNode)
            metrics = make(_metrics_node_class(), use_sim_time=False)
            recorder = make(BagRecorderNode, bag_path=str(args.record), storage=args.storage, topics=BAG_TOPICS,
                            image_scale=args.image_scale) if args.record is not None else None
            player = make(StackPlayerNode, use_sim_time=False, clock=episode.clock,
                          max_frames=n_frames if args.frames or sim_clock else 0)
        except (ConfigError, ValueError) as exc:
            raise SimError(str(exc)) from None
        for node in nodes:
            if node is not player:
                executor.add_node(node)
        for spinner in spinners:
            spinner.start()

        def connected() -> bool:
            full = predictor.input_topic == "camera/image_raw"
            images = 1 + full + (recorder is not None)
            return (player.image_pub.get_subscription_count() >= images
                    and (full or detector.crop_pub.get_subscription_count() >= 1)
                    and player.truth_pub.get_subscription_count() >= 1 + (recorder is not None)
                    and controller.joint_pub.get_subscription_count() >= 1
                    and predictor.offset_pub.get_subscription_count() >= 3
                    and (not sim_clock or (controller.command_pub.get_subscription_count() >= 1
                                           and player.lockstep.clock_pub.get_subscription_count() >= 3))
                    and (recorder is None or recorder.all_subscribed))

        if not _wait(connected, timeout_s=15.0):
            raise SimError("the nodes did not discover each other within 15 s (DDS on loopback; "
                           "check ROS_AUTOMATIC_DISCOVERY_RANGE and ROS_DOMAIN_ID)")
        camera_executor.add_node(player)  # the camera starts now, with everyone listening
        interrupted = False
        if args.frames or sim_clock:
            total, unit = n_frames, "frames"
            progress = lambda: n_frames if player.done else min(len(metrics.truth), n_frames - 1)  # noqa: E731
            budget_s = 30.0 + n_frames * (2.0 if sim_clock else 3.0 / episode.fps)
        else:
            total, unit, progress = round(args.duration, 1), "s", lambda: metrics.last_t_s
            budget_s = 30.0 + 3 * args.duration
        wall_start_s = time.monotonic()
        with tqdm(total=total, unit=unit, desc="sim", file=sys.stderr, leave=False,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} " + unit) as bar:
            try:
                while progress() < total and time.monotonic() < wall_start_s + budget_s:
                    if not metrics.truth and time.monotonic() > wall_start_s + 10.0:
                        raise SimError("the simulated camera published no frame within 10 s")
                    time.sleep(0.02)
                    bar.update(min(progress(), total) - bar.n)
            except KeyboardInterrupt:
                interrupted = True  # Ctrl-C: report the episode so far
        wall_elapsed_s = time.monotonic() - wall_start_s
        camera_executor.remove_node(player)  # no new frame, and on the sim clock time stands still
        controller.controller.enable(False)  # the episode is over: no move after its last frame
        if not sim_clock:
            controller.stepper.wait(timeout_s=5.0)  # a move in progress counts in full
            time.sleep(0.3)  # the last frames' offsets are still on their way
        if recorder is not None:
            _wait_quiet(lambda: recorder.messages_handled)  # the last messages reach the bag
        steps_travelled = float(controller.stepper.steps_travelled)
        extra = dict(frames_dropped=predictor.frames_dropped, frames_rejected=predictor.frames_rejected,
                     moves=controller.moves, detector_frames=detector.frames_processed, interrupted=interrupted,
                     frames_unanswered=player.frames_unanswered)
        extra.update(start_offset_steps=player.params.start_best_z_steps - player.params.initial_z_steps,
                     drift_steps_per_s=player.params.drift_steps_per_s, seed=player.params.seed,
                     input=system["focus_predictor_node"]["input"], model=str(predictor.predictor.path),
                     control_mode=controller.params.control_mode,
                     mode_changes=None if controller.hybrid is None else [
                         dict(t_s=round(c.t_s - (metrics.first_ns or 0) * 1e-9, 6), mode=c.mode.value,
                              reason=c.reason.value) for c in controller.hybrid.changes])
        _stop(executor, camera_executor, spinners)
        return _result(args, episode, metrics, steps_travelled, extra, wall_elapsed_s)
    finally:
        _stop(executor, camera_executor, spinners)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _result(args, episode: Episode, metrics, steps_travelled: float, extra: dict,
            wall_elapsed_s: float) -> SimResult:
    from ..core.closed_loop import percentile, summarize_episode

    if not metrics.truth:
        raise SimError("interrupted before the first frame" if extra["interrupted"] else "no frame was simulated")
    if args.frames or episode.clock == "sim":
        stamps = sorted(metrics.truth)[:episode.n_frames]
    else:
        stamps = sorted(ns for ns in metrics.truth if (ns - metrics.first_ns) * 1e-9 < args.duration)
    t_s = [(ns - metrics.first_ns) * 1e-9 for ns in stamps]
    lens = [metrics.truth[ns][0] for ns in stamps]
    best = [metrics.truth[ns][1] for ns in stamps]
    error = [metrics.truth[ns][2] for ns in stamps]
    predicted = [metrics.offsets.get(ns, math.nan) for ns in stamps]
    answered = [ns for ns in stamps if ns in metrics.offsets]
    wall_latency = [1e3 * (metrics.offset_wall_s[ns] - metrics.truth_wall_s[ns]) for ns in answered]
    if episode.clock == "sim":
        latency = [episode.latency_ms] * len(answered)  # what the loop experienced: the modelled latency
    else:
        latency = [metrics.stamp_latency_ms[ns] for ns in answered]
    summary = summarize_episode(error, latency_ms=latency, steps_travelled=steps_travelled)
    first = summary["frames_to_focus"]
    duration_s = t_s[-1] + 1.0 / episode.fps
    summary.update(extra)
    n_predictions = sum(1 for ns in answered if math.isfinite(metrics.offsets[ns]))
    summary.update(
        clock=episode.clock, n_predictions=n_predictions, duration_s=duration_s, fps=len(stamps) / duration_s,
        time_to_focus_s=None if first is None else t_s[first],
        modelled_latency_ms=episode.latency_ms if episode.clock == "sim" else None,
        wall=dict(elapsed_s=wall_elapsed_s, fps=len(stamps) / wall_elapsed_s if wall_elapsed_s > 0 else None,
                  latency_p50_ms=percentile(wall_latency, 50), latency_p95_ms=percentile(wall_latency, 95),
                  executor=args.executor))
    trace = {"t_s": t_s, "true_best_z_steps": best, "lens_z_steps": lens, "predicted_offset_steps": predicted,
             "predicted_best_z_steps": list(np.asarray(lens) + np.asarray(predicted))}
    return SimResult(summary, trace)
