"""``celegans-autofocus sim``: the closed loop in one process, for machines without ``ros2 launch``.

The simulated microscope (stack_player_node rendering a synthetic plate at the motor's z, with a
drifting best plane), worm_detector_node, focus_predictor_node and stepper_controller_node run as
ROS 2 nodes in one process (the camera on one single-threaded executor, the pipeline on another:
benchmarks/sim_executors.md), talking over their usual topics. ``--clock sim`` (the default): the player drives ``/clock`` lock-stepped with the pipeline
and every other node uses ``use_sim_time``; a frame's decision is taken at its stamp + the modelled
latency, so the same seed gives the same episode on any machine and under any load. ``--clock wall``:
real time, for latency and throughput figures. A metrics node of this command matches every
``sim/ground_truth`` with the ``focus/offset`` of the same frame and reports the episode with
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

CROP_FRAME_HEIGHT_PX = 486
MIN_FRAME_HEIGHT_PX = 64
BAG_TOPICS = ["camera/image_raw", "worm/crop", "focus/offset", "focus/command", "stepper/joint_states",
              "sim/ground_truth", "worm/target"]
EXECUTORS = ("split", "single", "multi", "events")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("episode")
    g.add_argument("--clock", choices=["sim", "wall"], default="sim",
                   help="sim: the player drives /clock lock-stepped with the pipeline, the same result on any "
                        "machine (latency is --latency-ms); wall: real time, for latency and fps figures")
    g.add_argument("--duration", type=float, default=20.0, metavar="SECONDS", help="episode length, in the clock's time")
    g.add_argument("--frames", type=int, default=0, metavar="N",
                   help="end after N camera frames instead of --duration (on the wall clock robust to a stalled "
                        "machine: the episode takes longer, never fewer frames)")
    g.add_argument("--latency-ms", type=float, default=30.0, metavar="MS",
                   help="sim clock: modelled time from a frame's stamp to the controller's decision "
                        "(less than one frame period)")
    g.add_argument("--start-offset", type=float, default=150.0, metavar="STEPS",
                   help="best plane minus lens z at t = 0 (steps to focus; 1 step = 5 um)")
    g.add_argument("--seed", type=int, default=0, help="scene, noise and drift seed")
    g.add_argument("--fps", type=float, default=15.0, help="camera frame rate")
    g.add_argument("--drift", type=float, default=2.0, metavar="STEPS_PER_S",
                   help="best-plane drift (plate tilt while the worm crawls)")
    g.add_argument("--random-walk", type=float, default=0.5, metavar="STEPS_PER_SQRT_S",
                   help="random walk of the best plane")
    g.add_argument("--switch", type=float, nargs=2, action="append", default=[], metavar=("T_S", "JUMP_STEPS"),
                   help="at T_S the target switches to a worm JUMP_STEPS away in z (repeatable)")
    g.add_argument("--n-worms", type=int, default=3, help="worms on the simulated plate")
    g.add_argument("--frame-height", type=int, default=0, metavar="PX",
                   help="simulated camera frame height (0 = auto: for a crop model the field binned 4x, "
                        f"{CROP_FRAME_HEIGHT_PX} px; for a full-frame model its input side, as training renders "
                        f"full frames, at least {MIN_FRAME_HEIGHT_PX}); the width keeps the 4:3 sensor")
    g = parser.add_argument_group("model and control")
    g.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled models/default.onnx)")
    g.add_argument("--input", choices=["full", "crop"], default=None,
                   help="predict on the full frame or on the detector's worm crop (default: the view the model "
                        "was trained on, its metadata's input_view)")
    g.add_argument("--fov", type=int, default=500, metavar="PX", help="detector crop side in full-frame px")
    g.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime intra-op threads (0 = one per core; 1, the default, gives the same numbers "
                        "on any machine)")
    g.add_argument("--executor", choices=EXECUTORS, default="split",
                   help="rclpy executors: split = the camera (player) and the pipeline on two single-threaded "
                        "executors in two threads, as on a microscope; single, multi, events = all nodes on one "
                        "(benchmarks/sim_executors.md)")
    g.add_argument("--max-speed", type=float, default=2000.0, metavar="STEPS_PER_S", help="focus motor speed")
    g.add_argument("--deadband", type=float, default=8.0, metavar="STEPS",
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


def _check(args: argparse.Namespace) -> str | None:
    """The first bad option value, as a message for the user, or None."""
    if not (math.isfinite(args.duration) and args.duration > 0):
        return f"--duration must be > 0 s, got {args.duration}"
    if args.frames < 0:
        return f"--frames must be >= 0 (0 = use --duration), got {args.frames}"
    if not (math.isfinite(args.fps) and 0 < args.fps <= 200):
        return f"--fps must be in (0, 200], got {args.fps}"
    if not (math.isfinite(args.latency_ms) and 0 <= args.latency_ms < 1000.0 / args.fps):
        return f"--latency-ms must be in [0, one frame period = {1000.0 / args.fps:.1f} ms), got {args.latency_ms}"
    if args.threads < 0:
        return f"--threads must be >= 0, got {args.threads}"
    if not math.isfinite(args.start_offset) or abs(args.start_offset) > 1000:
        return f"--start-offset must be within +-1000 steps (the soft limits), got {args.start_offset}"
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
        model = args.model or default_model_path()
        predictor = FocusPredictor(model, providers=["CPUExecutionProvider"])
    except ModelError as exc:
        print(f"celegans-autofocus sim: {exc}", file=sys.stderr)
        return 2
    if args.record is not None and args.record.exists():
        shutil.rmtree(args.record)  # a rosbag2 bag (checked above) and --overwrite was given
    if args.record is not None:
        args.record.parent.mkdir(parents=True, exist_ok=True)
    try:
        args.input = input_view(args.input or "auto", predictor.metadata)
        frame_height = frame_height_px(args.frame_height, predictor.spec.input_px, args.input)
        result = run_episode(args, Path(model), frame_height)
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

        trace = result.trace
        title = (f"Closed-loop CNN autofocus (sim, {Path(model).name}): start offset {args.start_offset:+g} "
                 f"steps, drift {args.drift:g} steps/s, seed {args.seed}")
        plot_focus_timeline(trace["t_s"], trace["true_best_z_steps"], trace["lens_z_steps"],
                            trace["predicted_best_z_steps"], args.plot, title=title)
        print(f"plot: {args.plot}")
    if args.record is not None:
        print(f"bag: {args.record} ({args.storage})")
    return 130 if result.summary["interrupted"] else 0


def frame_height_px(requested: int, input_px: int, view: str) -> int:
    """The simulated frame height: as asked; else 4x binned for crops (a 500 px crop is then ~125 px, about
    as training renders it); else the model's input side (at least MIN_FRAME_HEIGHT_PX)."""
    if requested:
        return requested
    return CROP_FRAME_HEIGHT_PX if view == "crop" else min(FULL_FRAME_WH_PX[1], max(MIN_FRAME_HEIGHT_PX, input_px))


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def format_summary(s: dict) -> str:
    """The summary table printed at the end of a run."""
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
        (f"in focus (|error| <= {IN_FOCUS_STEPS:g})", f"{100 * s['in_focus_fraction']:.1f} % of all frames, "
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
    """EpisodeMetrics is defined on first use so that importing this module does not import rclpy."""
    from geometry_msgs.msg import PointStamped
    from rclpy.node import Node

    from ..nodes.common import reliable_qos

    class EpisodeMetrics(Node):
        """Pairs each frame's ground truth with the focus/offset predicted from it (same header stamp).

        Stamps are on the episode's clock; the receive times are wall time (``time.monotonic``), so the
        wall latency (truth received -> offset received) is measured on either clock."""

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


def _make_executor(kind: str, context):
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    if kind == "events":  # rclpy.experimental: its timers never fired here (benchmarks/sim_executors.md)
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=4, context=context)
    return SingleThreadedExecutor(context=context)


def _ros_args(args: argparse.Namespace) -> list[str]:
    """rclpy arguments of the episode's context: log level, and /clock kept inside the namespace so that
    episodes in other namespaces of the same ROS domain keep their own time."""
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


def run_episode(args: argparse.Namespace, model_path: Path, frame_height: int) -> SimResult:
    """Start the nodes on one executor, play ``args.duration`` seconds (or ``args.frames`` frames) on the
    chosen clock, and collect the metrics."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from ..nodes.bag_recorder_node import BagRecorderNode
    from ..nodes.common import ConfigError
    from ..nodes.focus_predictor_node import FocusPredictorNode
    from ..nodes.stack_player_node import StackPlayerNode
    from ..nodes.stepper_controller_node import StepperControllerNode
    from ..nodes.worm_detector_node import WormDetectorNode

    sim_clock = args.clock == "sim"
    n_frames = args.frames or max(1, round(args.duration * args.fps))
    context = Context()
    rclpy.init(args=_ros_args(args), context=context)
    executor = _make_executor(args.executor, context)
    camera_executor = _make_executor("single", context) if args.executor == "split" else executor
    nodes = []

    def make(cls, use_sim_time: bool = sim_clock, **params):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        overrides.append(Parameter("use_sim_time", value=use_sim_time))
        node = cls(namespace=args.namespace, context=context, parameter_overrides=overrides)
        nodes.append(node)
        return node

    spinners = [threading.Thread(target=e.spin, name=f"sim_executor_{i}", daemon=True)
                for i, e in enumerate(dict.fromkeys([executor, camera_executor]))]
    try:
        try:
            controller = make(StepperControllerNode, backend="simulated", max_speed_steps_per_s=args.max_speed,
                              deadband_steps=args.deadband, modelled_latency_s=args.latency_ms / 1000.0)
            predictor = make(FocusPredictorNode, model_path=str(model_path), input=args.input,
                             intra_op_threads=args.threads)
            detector = make(WormDetectorNode, fov_px=args.fov)
            metrics = make(_metrics_node_class(), use_sim_time=False)
            recorder = make(BagRecorderNode, bag_path=str(args.record), storage=args.storage, topics=BAG_TOPICS,
                            image_scale=args.image_scale) if args.record is not None else None
            switches = sorted(args.switch)
            drift = dict(switch_times_s=[float(t) for t, _ in switches],
                         switch_jumps_steps=[float(j) for _, j in switches]) if switches else {}
            width = round(frame_height * FULL_FRAME_WH_PX[0] / FULL_FRAME_WH_PX[1])
            player = make(StackPlayerNode, use_sim_time=False, seed=args.seed, n_worms=args.n_worms,
                          fps=float(args.fps), clock=args.clock, max_frames=n_frames if args.frames or sim_clock else 0,
                          frame_width_px=width, frame_height_px=frame_height,
                          start_best_z_steps=args.start_offset, drift_steps_per_s=args.drift,
                          random_walk_steps_per_sqrt_s=args.random_walk, **drift)
        except (ConfigError, ValueError) as exc:
            raise SimError(str(exc)) from None
        for node in nodes:
            if node is not player:
                executor.add_node(node)
        for spinner in spinners:
            spinner.start()

        def connected() -> bool:
            images = 1 + (args.input == "full") + (recorder is not None)
            return (player.image_pub.get_subscription_count() >= images
                    and (args.input == "full" or detector.crop_pub.get_subscription_count() >= 1)
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
            budget_s = 30.0 + n_frames * (2.0 if sim_clock else 3.0 / args.fps)
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
        steps_travelled = float(controller.stepper.steps_travelled)
        extra = dict(frames_dropped=predictor.frames_dropped, frames_rejected=predictor.frames_rejected,
                     moves=controller.moves, detector_frames=detector.frames_processed, interrupted=interrupted,
                     frames_unanswered=player.frames_unanswered)
        _stop(executor, camera_executor, spinners)
        return _result(args, model_path, metrics, steps_travelled, extra, n_frames, wall_elapsed_s)
    finally:
        _stop(executor, camera_executor, spinners)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _result(args, model_path: Path, metrics, steps_travelled: float, extra: dict, n_frames: int,
            wall_elapsed_s: float) -> SimResult:
    from ..core.closed_loop import percentile, summarize_episode

    if not metrics.truth:
        raise SimError("interrupted before the first frame" if extra["interrupted"] else "no frame was simulated")
    if args.frames or args.clock == "sim":
        stamps = sorted(metrics.truth)[:n_frames]
    else:
        stamps = sorted(ns for ns in metrics.truth if (ns - metrics.first_ns) * 1e-9 < args.duration)
    t_s = [(ns - metrics.first_ns) * 1e-9 for ns in stamps]
    lens = [metrics.truth[ns][0] for ns in stamps]
    best = [metrics.truth[ns][1] for ns in stamps]
    error = [metrics.truth[ns][2] for ns in stamps]
    predicted = [metrics.offsets.get(ns, math.nan) for ns in stamps]
    answered = [ns for ns in stamps if ns in metrics.offsets]
    wall_latency = [1e3 * (metrics.offset_wall_s[ns] - metrics.truth_wall_s[ns]) for ns in answered]
    if args.clock == "sim":
        latency = [args.latency_ms] * len(answered)  # what the loop experienced: the modelled latency
    else:
        latency = [metrics.stamp_latency_ms[ns] for ns in answered]
    summary = summarize_episode(error, latency_ms=latency, steps_travelled=steps_travelled)
    first = summary["frames_to_focus"]
    duration_s = t_s[-1] + 1.0 / args.fps
    summary.update(extra)
    n_predictions = sum(1 for ns in answered if math.isfinite(metrics.offsets[ns]))
    summary.update(
        clock=args.clock, n_predictions=n_predictions, duration_s=duration_s, fps=len(stamps) / duration_s,
        time_to_focus_s=None if first is None else t_s[first], start_offset_steps=float(args.start_offset),
        drift_steps_per_s=args.drift, seed=args.seed, input=args.input, model=str(model_path),
        modelled_latency_ms=args.latency_ms if args.clock == "sim" else None,
        wall=dict(elapsed_s=wall_elapsed_s, fps=len(stamps) / wall_elapsed_s if wall_elapsed_s > 0 else None,
                  latency_p50_ms=percentile(wall_latency, 50), latency_p95_ms=percentile(wall_latency, 95),
                  executor=args.executor))
    trace = {"t_s": t_s, "true_best_z_steps": best, "lens_z_steps": lens, "predicted_offset_steps": predicted,
             "predicted_best_z_steps": list(np.asarray(lens) + np.asarray(predicted))}
    return SimResult(summary, trace)

