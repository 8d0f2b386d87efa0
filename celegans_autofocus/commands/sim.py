"""``celegans-autofocus sim``: the closed loop in one process, for machines without ``ros2 launch``.

The simulated microscope (stack_player_node rendering a synthetic plate at the motor's z, with a
drifting best plane), worm_detector_node, focus_predictor_node and stepper_controller_node run as
ROS 2 nodes on one MultiThreadedExecutor, in real time, talking over their usual topics. A
recorder node of this command matches every ``sim/ground_truth`` with the ``focus/offset`` of the
same frame and reports the episode with :func:`core.closed_loop.summarize_episode`; optionally a
PNG timeline, a JSON summary and a rosbag2 bag (bag_recorder_node, MCAP by default).
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

HELP = "closed-loop simulation: player, detector, predictor and controller nodes in one process"

FULL_FRAME_WH = (2592, 1944)
CROP_FRAME_HEIGHT_PX = 486
MIN_FRAME_HEIGHT_PX = 64
BAG_TOPICS = ["camera/image_raw", "worm/crop", "focus/offset", "stepper/joint_states", "sim/ground_truth", "worm/target"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("episode")
    g.add_argument("--duration", type=float, default=20.0, metavar="SECONDS", help="simulated (= wall) time")
    g.add_argument("--frames", type=int, default=0, metavar="N",
                   help="end after N camera frames instead of --duration (robust to a stalled machine: "
                        "the episode takes longer in wall time, never fewer frames)")
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
    g.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime intra-op threads (0 = one per core; benchmarks/sim_render_and_threads.md)")
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
    if not math.isfinite(args.start_offset) or abs(args.start_offset) > 1000:
        return f"--start-offset must be within +-1000 steps (the soft limits), got {args.start_offset}"
    if not (0 < args.image_scale <= 1):
        return f"--image-scale must be in (0, 1], got {args.image_scale}"
    if args.frame_height and not 24 <= args.frame_height <= FULL_FRAME_WH[1]:
        return f"--frame-height must be 0 (auto) or in [24, {FULL_FRAME_WH[1]}], got {args.frame_height}"
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
    return CROP_FRAME_HEIGHT_PX if view == "crop" else min(FULL_FRAME_WH[1], max(MIN_FRAME_HEIGHT_PX, input_px))


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def format_summary(s: dict) -> str:
    """The summary table printed at the end of a run."""
    rows = [
        ("frames", f"{s['n_frames']} in {s['duration_s']:.1f} s ({s['fps']:.1f} fps); "
                   f"{s['n_predictions']} predicted, {s['frames_dropped']} dropped by the predictor"),
        ("start offset", _fmt(s["start_offset_steps"], " steps", 0)),
        ("frames to focus", _fmt(s["frames_to_focus"]) + ("" if s["frames_to_focus"] is None else
                                                         f" ({s['time_to_focus_s']:.2f} s)")),
        ("final error", _fmt(s["final_error_steps"], " steps")),
        ("steady |error| (median)", _fmt(s["steady_abs_error_steps"], " steps")),
        ("in focus (|error| <= 8)", f"{100 * s['in_focus_fraction']:.1f} % of all frames, "
                                    f"{100 * s['in_focus_fraction_tracking']:.1f} % after reaching focus"),
        ("latency p50 / p95", f"{_fmt(s['latency_p50_ms'])} / {_fmt(s['latency_p95_ms'], ' ms')} "
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
        """Pairs each frame's ground truth with the focus/offset predicted from it (same header stamp)."""

        def __init__(self, **kwargs):
            super().__init__("sim_metrics", **kwargs)
            self.truth: dict[int, tuple[float, float, float]] = {}     # stamp ns -> (lens, best, offset)
            self.offsets: dict[int, tuple[float, float]] = {}          # stamp ns -> (offset, latency ms)
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
            self.truth[ns] = (msg.point.x, msg.point.y, msg.point.z)
            self.last_t_s = (ns - self.first_ns) * 1e-9

        def _on_offset(self, msg) -> None:
            ns = self._ns(msg)
            latency_ms = (self.get_clock().now().nanoseconds - ns) * 1e-6
            self.offsets[ns] = (msg.point.z, latency_ms)

    return EpisodeMetrics


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_episode(args: argparse.Namespace, model_path: Path, frame_height: int) -> SimResult:
    """Start the nodes on one executor, play ``args.duration`` seconds (or ``args.frames`` frames) in real
    time, and collect the metrics."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from ..nodes.bag_recorder_node import BagRecorderNode
    from ..nodes.common import ConfigError
    from ..nodes.focus_predictor_node import FocusPredictorNode
    from ..nodes.stack_player_node import StackPlayerNode
    from ..nodes.stepper_controller_node import StepperControllerNode
    from ..nodes.worm_detector_node import WormDetectorNode

    context = Context()
    rclpy.init(args=["--ros-args", "--log-level", "info" if args.verbose else "warn"], context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    nodes = []

    def make(cls, **params):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        node = cls(namespace=args.namespace, context=context, parameter_overrides=overrides)
        nodes.append(node)
        return node

    spinner = threading.Thread(target=executor.spin, name="sim_executor", daemon=True)
    try:
        try:
            controller = make(StepperControllerNode, backend="simulated", max_speed_steps_per_s=args.max_speed,
                              deadband_steps=args.deadband)
            predictor = make(FocusPredictorNode, model_path=str(model_path), input=args.input,
                             intra_op_threads=args.threads)
            detector = make(WormDetectorNode, fov_px=args.fov)
            metrics = make(_metrics_node_class())
            recorder = make(BagRecorderNode, bag_path=str(args.record), storage=args.storage, topics=BAG_TOPICS,
                            image_scale=args.image_scale) if args.record is not None else None
            switches = sorted(args.switch)
            drift = dict(switch_times_s=[float(t) for t, _ in switches],
                         switch_jumps_steps=[float(j) for _, j in switches]) if switches else {}
            width = round(frame_height * FULL_FRAME_WH[0] / FULL_FRAME_WH[1])
            player = make(StackPlayerNode, seed=args.seed, n_worms=args.n_worms, fps=float(args.fps),
                          frame_width_px=width, frame_height_px=frame_height, start_best_z_steps=args.start_offset,
                          drift_steps_per_s=args.drift, random_walk_steps_per_sqrt_s=args.random_walk, **drift)
        except (ConfigError, ValueError) as exc:
            raise SimError(str(exc)) from None
        for node in nodes:
            if node is not player:
                executor.add_node(node)
        spinner.start()

        def connected() -> bool:
            images = 1 + (args.input == "full") + (recorder is not None)
            return (player.image_pub.get_subscription_count() >= images
                    and (args.input == "full" or detector.crop_pub.get_subscription_count() >= 1)
                    and player.truth_pub.get_subscription_count() >= 1 + (recorder is not None)
                    and controller.joint_pub.get_subscription_count() >= 1
                    and predictor.offset_pub.get_subscription_count() >= 3
                    and (recorder is None or recorder.all_subscribed))

        if not _wait(connected, timeout_s=15.0):
            raise SimError("the nodes did not discover each other within 15 s (DDS on loopback; "
                           "check ROS_AUTOMATIC_DISCOVERY_RANGE and ROS_DOMAIN_ID)")
        executor.add_node(player)  # the camera starts now, with everyone listening
        interrupted = False
        if args.frames:
            total, unit, progress = args.frames, "frames", lambda: len(metrics.truth)
            planned_s = args.frames / args.fps
        else:
            total, unit, progress = round(args.duration, 1), "s", lambda: metrics.last_t_s
            planned_s = args.duration
        with tqdm(total=total, unit=unit, desc="sim", file=sys.stderr, leave=False,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} " + unit) as bar:
            started = time.monotonic()
            try:
                while progress() < total and time.monotonic() < started + 3 * planned_s + 30:
                    if not metrics.truth and time.monotonic() > started + 10.0:
                        raise SimError("the simulated camera published no frame within 10 s")
                    time.sleep(0.1)
                    bar.update(min(progress(), total) - bar.n)
            except KeyboardInterrupt:
                interrupted = True  # Ctrl-C: report the episode so far
        controller.controller.enable(False)  # the episode is over: no move after its last frame
        executor.remove_node(player)
        controller.stepper.wait(timeout_s=5.0)  # a move in progress counts in full
        steps_travelled = float(controller.stepper.steps_travelled)
        extra = dict(frames_dropped=predictor.frames_dropped, moves=controller.moves,
                     detector_frames=detector.frames_processed, interrupted=interrupted)
        time.sleep(0.3)  # the last frames' offsets are still on their way
        executor.shutdown()
        extra["frames_rejected"] = predictor.frames_rejected
        return _result(args, model_path, metrics, steps_travelled, extra)
    finally:
        executor.shutdown()
        if spinner.is_alive():
            spinner.join(timeout=5.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _result(args, model_path: Path, metrics, steps_travelled: float, extra: dict) -> SimResult:
    from ..core.closed_loop import summarize_episode

    if not metrics.truth:
        raise SimError("interrupted before the first frame" if extra["interrupted"] else "no frame was simulated")
    if args.frames:
        stamps = sorted(metrics.truth)[:args.frames]
    else:
        stamps = sorted(ns for ns in metrics.truth if (ns - metrics.first_ns) * 1e-9 < args.duration)
    t_s = [(ns - metrics.first_ns) * 1e-9 for ns in stamps]
    lens = [metrics.truth[ns][0] for ns in stamps]
    best = [metrics.truth[ns][1] for ns in stamps]
    error = [metrics.truth[ns][2] for ns in stamps]
    predicted = [metrics.offsets.get(ns, (math.nan, None))[0] for ns in stamps]
    latency = [metrics.offsets[ns][1] for ns in stamps if ns in metrics.offsets]
    summary = summarize_episode(error, latency_ms=latency, steps_travelled=steps_travelled)
    first = summary["frames_to_focus"]
    duration_s = t_s[-1] + 1.0 / args.fps
    summary.update(extra)
    summary.update(
        n_predictions=len(latency), duration_s=duration_s, fps=len(stamps) / duration_s,
        time_to_focus_s=None if first is None else t_s[first], start_offset_steps=float(args.start_offset),
        drift_steps_per_s=args.drift, seed=args.seed, input=args.input, model=str(model_path))
    trace = {"t_s": t_s, "true_best_z_steps": best, "lens_z_steps": lens, "predicted_offset_steps": predicted,
             "predicted_best_z_steps": list(np.asarray(lens) + np.asarray(predicted))}
    return SimResult(summary, trace)
