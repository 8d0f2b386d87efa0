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

"""``celegans-autofocus bag-eval BAG``: replay a rosbag2 bag offline (rosbags only, no ROS runtime).

Re-runs a model on the recorded frames (sensor_msgs/Image in any supported encoding, or
sensor_msgs/CompressedImage) and compares its offsets with a reference:

- ``truth``: a geometry_msgs/PointStamped topic whose z is the true offset in steps (the
  simulation's ``sim/ground_truth``), matched to frames by header stamp;
- ``sweep``: a recorded z sweep, i.e. frames plus sensor_msgs/JointState of the focus motor: each
  frame taken at rest gets the motor position; the best z is found by ``label``'s labeller over the
  sweep (``core.dataset.labelling.pick_best``: ``auto`` by default, flagged when its measures
  disagree) and the true offset of a frame is ``best_z - z``.

If the bag also holds the live predictions (``focus/offset``), they are scored the same way.
"""
from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.metrics import IN_FOCUS_STEPS, SIGN_THRESHOLD_STEPS, error_summary

HELP = "evaluate a model on a recorded bag against ground truth or a recorded z sweep (no ROS needed)"

CAMERA_TOPIC, CROP_TOPIC = "camera/image_raw", "worm/crop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.dataset.labelling import AGREE_STEPS
    from ..core.focus import AUTO, MEASURES
    from ..core.sensor import FULL_FRAME_WH_PX

    parser.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3), e.g. from `ros2 bag record`")
    g = parser.add_argument_group("model")
    g.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled models/default.onnx)")
    g.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = one per core)")
    g = parser.add_argument_group("topics (relative names also match inside a namespace)")
    g.add_argument("--image-topic", default=None,
                   help="sensor_msgs/Image or CompressedImage (default: for a crop model the recorded "
                        f"{CROP_TOPIC} if the bag has it, else {CAMERA_TOPIC})")
    g.add_argument("--truth-topic", default="sim/ground_truth", help="PointStamped, z = true offset (steps)")
    g.add_argument("--joint-topic", default="stepper/joint_states", help="JointState of the focus motor (steps)")
    g.add_argument("--joint-name", default="", help="joint to use (default: the first one)")
    g.add_argument("--offset-topic", default="focus/offset", help="recorded live predictions, scored if present")
    g = parser.add_argument_group("view (what the model sees)")
    g.add_argument("--view", choices=["auto", "as-recorded", "detect"], default="auto",
                   help="as-recorded: predict on the frames as they are; detect: find and track the worm in "
                        "each frame and predict on its --fov crop, as worm_detector_node does live; auto: "
                        "detect for a crop model reading camera frames, else as-recorded")
    g.add_argument("--fov", type=int, default=500, metavar="PX",
                   help="detect: crop side in full-frame px (0 = the whole frame, tracked but uncropped)")
    g.add_argument("--full-width-px", type=int, default=FULL_FRAME_WH_PX[0],
                   help="detect: sensor width in px; narrower (binned, downscaled) frames are scaled")
    g = parser.add_argument_group("reference")
    g.add_argument("--reference", choices=["auto", "truth", "sweep"], default="auto",
                   help="auto: the truth topic if the bag has it, else a z sweep")
    g.add_argument("--measure", default=AUTO, choices=[AUTO, *sorted(MEASURES)],
                   help=f"labeller of a z sweep, as `label --measure` (default {AUTO}: label's default)")
    g.add_argument("--agree-steps", type=float, default=AGREE_STEPS,
                   help=f"sweep, {AUTO}: as `label --agree-steps` (default: %(default)g)")
    g.add_argument("--match-tolerance-ms", type=float, default=1.0,
                   help="largest stamp difference between a frame and its ground truth / live offset")
    g.add_argument("--settle-ms", type=float, default=30.0,
                   help="sweep: a frame counts as taken at rest this long after the motor reported its position")
    g.add_argument("--max-frames", type=int, default=0, help="evaluate at most this many frames (0 = all)")
    g = parser.add_argument_group("output")
    g.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    g.add_argument("--plot", type=Path, default=None, help="PNG report (default: BAG_eval.png beside the bag)")


class EvalError(ValueError):
    """Input that bag-eval cannot evaluate; the message names the bag, topic or value."""


@dataclass
class Frame:
    stamp_ns: int
    predicted_steps: float  # NaN when the model returned a non-finite value
    latency_ms: float
    measure_values: dict[str, float] = field(default_factory=dict)  # sweep: the labeller's measures


@dataclass
class Replay:
    frames: list[Frame] = field(default_factory=list)
    truth: dict[int, float] = field(default_factory=dict)  # header stamp ns -> true offset
    offsets: dict[int, float] = field(default_factory=dict)  # header stamp ns -> live prediction
    joints: list[tuple[int, float]] = field(default_factory=list)  # (stamp ns, position steps)
    bad_frames: list[str] = field(default_factory=list)
    non_finite: int = 0
    frame_wh: tuple[int, int] | None = None  # size of the first usable frame


def _stamp(msg, t_ns: int) -> int:
    """Header stamp in ns; the bag's receive time when the publisher left the stamp at zero."""
    from ..recording import stamp_ns

    s = stamp_ns(msg.header)
    return s if s > 0 else t_ns


def _joint_position(msg, name: str, topic: str) -> float | None:
    names = list(msg.name)
    if name:
        if name not in names:
            raise EvalError(f"{topic}: no joint named {name!r}; joints: {names}")
        i = names.index(name)
    else:
        i = 0
    return float(msg.position[i]) if len(msg.position) > i else None


def replay(bag, topics: dict[str, str | None], predictor, measures: tuple[str, ...], joint_name: str,
           max_frames: int, cropper=None) -> Replay:
    """Make one pass over the bag.

    Predict every frame (on ``cropper``'s worm crop if given) and take its focus ``measures`` (a sweep's),
    collect truth, live offsets and joint states.
    """
    from tqdm import tqdm

    from ..core.detection import crop_image
    from ..core.focus import measure_values
    from ..core.images import ImageError
    from ..core.predictor import NonFiniteOutputError
    from ..recording import image_from_msg

    out = Replay()
    wanted = [t for t in topics.values() if t is not None]
    total = bag.count(topics["image"])
    bar = tqdm(total=min(total, max_frames) if max_frames else total, desc="bag-eval", unit="frame",
               file=sys.stderr)
    for topic, msgtype, t_ns, msg in bag.messages(wanted):
        if topic == topics["image"]:
            if max_frames and len(out.frames) + len(out.bad_frames) >= max_frames:
                continue
            stamp = _stamp(msg, t_ns)
            try:
                gray = image_from_msg(msg, msgtype)
            except ImageError as exc:
                out.bad_frames.append(f"frame at {stamp / 1e9:.3f} s: {exc}")
                bar.update()
                continue
            if out.frame_wh is None:
                out.frame_wh = (int(gray.shape[1]), int(gray.shape[0]))
            seen = gray if cropper is None else crop_image(gray, cropper(gray).window_px)
            t0 = time.perf_counter()
            try:
                pred = float(predictor.predict(seen))
            except NonFiniteOutputError:
                pred = math.nan
                out.non_finite += 1
            latency_ms = (time.perf_counter() - t0) * 1e3
            values = measure_values(seen, measures)  # the sweep labels what the model sees
            out.frames.append(Frame(stamp, pred, latency_ms, values))
            bar.update()
        elif topic == topics.get("truth"):
            out.truth[_stamp(msg, t_ns)] = float(msg.point.z)
        elif topic == topics.get("offset"):
            out.offsets[_stamp(msg, t_ns)] = float(msg.point.z)
        elif topic == topics.get("joint"):
            pos = _joint_position(msg, joint_name, topic)
            if pos is not None:
                out.joints.append((_stamp(msg, t_ns), pos))
    bar.close()
    return out


def _nearest(table: dict[int, float], keys: list[int], stamp: int, tol_ns: int) -> float | None:
    if not keys:
        return None
    i = bisect.bisect_left(keys, stamp)
    best = min((k for k in keys[max(i - 1, 0):i + 1]), key=lambda k: abs(k - stamp))
    return table[best] if abs(best - stamp) <= tol_ns else None


def truth_reference(rep: Replay, tol_ns: int) -> tuple[list[float | None], dict]:
    keys = sorted(rep.truth)
    return [_nearest(rep.truth, keys, f.stamp_ns, tol_ns) for f in rep.frames], {"reference": "truth"}


def sweep_reference(rep: Replay, measure: str, settle_ns: int, agree_steps: float) -> tuple[list[float | None], dict]:
    """Compute the true offsets from a z sweep.

    A frame is at rest when the motor had reported its last position at least ``settle_ns`` before the
    frame's stamp; best z = ``label``'s labeller ``measure`` over the mean measure values per z.
    """
    from ..core.dataset.labelling import pick_best

    joints = sorted(rep.joints)
    stamps = [s for s, _ in joints]
    arrived = []  # stamp at which each reported position was first reported (start of its run)
    for k, (s, pos) in enumerate(joints):
        arrived.append(arrived[-1] if k and abs(pos - joints[k - 1][1]) < 0.5 else s)
    z_of: list[int | None] = []
    for f in rep.frames:
        i = bisect.bisect_right(stamps, f.stamp_ns) - 1
        at_rest = i >= 0 and f.stamp_ns - arrived[i] >= settle_ns
        z_of.append(int(round(joints[i][1])) if at_rest else None)
    by_z: dict[int, list[dict[str, float]]] = defaultdict(list)
    for f, z in zip(rep.frames, z_of):
        if z is not None:
            by_z[z].append(f.measure_values)
    if len(by_z) < 3:
        raise EvalError(f"the sweep has frames at rest at only {len(by_z)} motor position(s); need at least 3 "
                        "(is the joint topic the focus motor, and did it move between frames?)")
    zs = np.array(sorted(by_z))
    names = by_z[int(zs[0])][0].keys()
    curves = {name: np.array([np.mean([v[name] for v in by_z[z]]) for z in zs]) for name in names}
    pick = pick_best(zs, curves, measure, agree_steps=agree_steps)
    best = pick.z_index
    info = {"reference": "sweep", "measure": measure, "best_from": pick.measure, "contrast_mode": pick.mode,
            "best_z_steps": best, "sweep_z_steps": [int(zs[0]), int(zs[-1])], "sweep_positions": int(zs.size),
            "frames_moving": sum(z is None for z in z_of), "ambiguous": pick.reason}
    return [None if z is None else float(best - z) for z in z_of], info


def format_report(bag: Path, info: dict, results: dict[str, dict]) -> str:
    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    lines = [f"bag-eval {bag}: reference = {info['reference']}"
             + (f" ({info['measure']} best z={info['best_z_steps']}, sweep z {info['sweep_z_steps'][0]}.."
                f"{info['sweep_z_steps'][1]} at {info['sweep_positions']} positions)" if info["reference"] == "sweep"
                else ""), "",
             f"| predictions | frames | MAE (steps) | median abs | p90 abs | bias within +-{SIGN_THRESHOLD_STEPS:g} | "
             f"within +-{IN_FOCUS_STEPS:g} steps | sign accuracy beyond +-{SIGN_THRESHOLD_STEPS:g} | non-finite |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['n']} | {f(m['mae_steps'])} | {f(m['median_abs_error_steps'])} | "
                     f"{f(m['p90_abs_error_steps'])} | {f(m['bias_steps'], '{:+.1f}')} | "
                     f"{f(m['in_focus_fraction'], '{:.1%}')} | {f(m['sign_accuracy'], '{:.1%}')} | "
                     f"{m['non_finite']} |")
    return "\n".join(lines)


def choose_view(args, bag, metadata: dict) -> tuple[str, str]:
    """Choose the image topic and the view (``as-recorded`` or ``detect``) for a model with this metadata."""
    from ..core.predictor import input_view

    crop_model = input_view("auto", metadata) == "crop"
    topic = args.image_topic
    if topic is None:
        wants_crop = crop_model and args.view != "detect" and bag.resolve(CROP_TOPIC) is not None
        topic = CROP_TOPIC if wants_crop else CAMERA_TOPIC
    is_crop_topic = topic.rstrip("/").endswith(CROP_TOPIC)
    view = args.view
    if view == "auto":
        view = "detect" if crop_model and not is_crop_topic else "as-recorded"
    elif view == "detect" and is_crop_topic:
        raise EvalError(f"--view detect finds the worm in camera frames, but {topic} holds crops already; "
                        f"use --image-topic {CAMERA_TOPIC} or --view as-recorded")
    return topic, view


def _resolve_topics(bag, args, image_topic: str) -> tuple[dict[str, str | None], str]:
    from ..recording import COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, JOINT_STATE_TYPE, POINT_STAMPED_TYPE

    topics: dict[str, str | None] = {}
    topics["image"], _ = bag.require(image_topic, [IMAGE_TYPE, COMPRESSED_IMAGE_TYPE])
    reference = args.reference
    if reference == "auto":
        if bag.resolve(args.truth_topic) is not None:
            reference = "truth"
        elif bag.resolve(args.joint_topic) is not None:
            reference = "sweep"
        else:
            raise EvalError(f"bag {bag.path} has neither ground truth {args.truth_topic!r} nor joint states "
                            f"{args.joint_topic!r} for a z sweep; it has: {bag.describe()}")
    if reference == "truth":
        topics["truth"], _ = bag.require(args.truth_topic, [POINT_STAMPED_TYPE])
    else:
        topics["joint"], _ = bag.require(args.joint_topic, [JOINT_STATE_TYPE])
    if bag.resolve(args.offset_topic) is not None:
        topics["offset"], _ = bag.require(args.offset_topic, [POINT_STAMPED_TYPE])
    return topics, reference


def run(args: argparse.Namespace) -> int:
    from ..core.detection import WormCropper
    from ..core.dataset.labelling import sweep_measure_names
    from ..core.predictor import FocusPredictor, ModelError, default_model_path
    from ..recording import BagError, BagReader

    try:
        if min(args.max_frames, args.match_tolerance_ms, args.settle_ms) < 0:
            raise EvalError("--max-frames, --match-tolerance-ms and --settle-ms must be >= 0")
        if not args.agree_steps > 0:
            raise EvalError(f"--agree-steps must be > 0, got {args.agree_steps}")
        if not (args.fov == 0 or args.fov >= 16) or args.full_width_px < 16:
            raise EvalError(f"--fov must be 0 (whole frame) or >= 16 px and --full-width-px >= 16 px, got "
                            f"{args.fov} and {args.full_width_px}")
        model_path = args.model if args.model is not None else default_model_path()
        predictor = FocusPredictor(model_path, providers="auto", intra_op_threads=args.threads)
        with BagReader(args.bag) as bag:
            image_topic, view = choose_view(args, bag, predictor.metadata)
            topics, reference = _resolve_topics(bag, args, image_topic)
            measures = sweep_measure_names(args.measure) if reference == "sweep" else ()
            cropper = WormCropper(fov_px=args.fov, full_width_px=args.full_width_px) if view == "detect" else None
            rep = replay(bag, topics, predictor, measures, args.joint_name, args.max_frames, cropper)
        if not rep.frames:
            raise EvalError(f"bag {args.bag}: no usable frame on {topics['image']}"
                            + (f" ({len(rep.bad_frames)} undecodable; first: {rep.bad_frames[0]})"
                               if rep.bad_frames else ""))
        tol_ns = int(args.match_tolerance_ms * 1e6)
        if reference == "truth":
            true, info = truth_reference(rep, tol_ns)
        else:
            true, info = sweep_reference(rep, args.measure, int(args.settle_ms * 1e6), args.agree_steps)
        have = [i for i, t in enumerate(true) if t is not None]
        if not have:
            raise EvalError(f"bag {args.bag}: no frame on {topics['image']} has a {reference} reference "
                            + (f"(no {topics['truth']} stamp within {args.match_tolerance_ms} ms of a frame stamp)"
                               if reference == "truth" else "(no frame taken with the motor at rest)"))
    except (BagError, EvalError, ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    true_arr = np.array([true[i] for i in have])
    pred_arr = np.array([rep.frames[i].predicted_steps for i in have])
    results = {f"model {Path(model_path).name}": error_summary(pred_arr - true_arr, true_arr)}
    if "offset" in topics:
        keys = sorted(rep.offsets)
        recorded = np.array([_nearest(rep.offsets, keys, rep.frames[i].stamp_ns, tol_ns) for i in have],
                            dtype=float)
        got = np.isfinite(recorded)
        if got.any():
            results[f"recorded {topics['offset']}"] = error_summary(recorded[got] - true_arr[got], true_arr[got])
    latencies = [f.latency_ms for f in rep.frames]
    info.update({"bag": str(args.bag), "model": str(model_path),
                 "model_input_view": predictor.metadata.get("input_view"),
                 "view": view if view == "as-recorded" else f"detect (fov {args.fov} px of {args.full_width_px})",
                 "frame_wh_px": rep.frame_wh, "topics": topics, "frames": len(rep.frames),
                 "frames_with_reference": len(have), "undecodable_frames": rep.bad_frames,
                 "latency_p50_ms": float(np.percentile(latencies, 50)),
                 "latency_p95_ms": float(np.percentile(latencies, 95))})
    print(format_report(args.bag, info, results))
    print(f"frames on {topics['image']}: {rep.frame_wh[0]}x{rep.frame_wh[1]} px, predicted on: {info['view']}; "
          f"the model was trained on {info['model_input_view']} views", file=sys.stderr)
    print(f"{len(have)} of {len(rep.frames)} frames have a reference; model latency p50 "
          f"{info['latency_p50_ms']:.1f} ms, p95 {info['latency_p95_ms']:.1f} ms on this CPU", file=sys.stderr)
    if info.get("ambiguous"):
        print(f"warning: the sweep's best plane is flagged: {info['ambiguous']}", file=sys.stderr)
    if rep.bad_frames:
        print(f"warning: skipped {len(rep.bad_frames)} undecodable frame(s); first: {rep.bad_frames[0]}",
              file=sys.stderr)

    bag_path = args.bag.resolve()
    plot_path = args.plot if args.plot is not None else bag_path.parent / f"{bag_path.name}_eval.png"
    try:
        from ..plots import plot_bag_eval

        t0 = rep.frames[have[0]].stamp_ns
        plot_bag_eval([(rep.frames[i].stamp_ns - t0) / 1e9 for i in have], true_arr, pred_arr, plot_path,
                      title=f"bag-eval {args.bag.name}: {reference} reference")
        print(f"plot: {plot_path}", file=sys.stderr)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"info": info, "results": results,
                                             "frames": [{"stamp_ns": rep.frames[i].stamp_ns,
                                                         "true_offset_steps": true[i],
                                                         "predicted_offset_steps": _finite_or_none(
                                                             rep.frames[i].predicted_steps)} for i in have]},
                                            indent=1))
    except OSError as exc:
        print(f"error: cannot write output: {exc}", file=sys.stderr)
        return 1
    return 0


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
