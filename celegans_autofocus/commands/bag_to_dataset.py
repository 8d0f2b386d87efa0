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

"""``celegans-autofocus bag-to-dataset BAG DATASET --plate P``: a recorded focus sweep becomes a stack.

The bag needs the camera's images and ``stepper/joint_states``. The lens' rests and the settled frame of each
come from :mod:`core.acquisition`, the rule ``acquire`` uses live, so a bag recorded during ``acquire`` gives
the same stack; the sweep is the longest evenly spaced run of rests (the rest before it and the return to the
start are left out). Written with :class:`core.dataset.sweep.SweepRecording`, the layout ``acquire`` writes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import sys
from pathlib import Path

HELP = "turn a recorded focus sweep (camera images + stepper/joint_states) into a stack of DATASET"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.acquisition import DEFAULT_SETTLE_S

    parser.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3)")
    parser.add_argument("dataset", type=Path, help="dataset root; the stack goes to plates/<plate>/<stack>/")
    parser.add_argument("--plate", required=True, help="plate id (training splits by plate)")
    parser.add_argument("--stack", default=None, help="stack name (default: the bag's directory name)")
    parser.add_argument("--image-topic", default="camera/image_raw", help="image topic in the bag")
    parser.add_argument("--joint-topic", default="stepper/joint_states", help="joint state topic in the bag")
    parser.add_argument("--joint", default="focus", help="the focus joint's name ('' = the first joint)")
    parser.add_argument("--settle", dest="settle_s", type=float, default=DEFAULT_SETTLE_S, metavar="SECONDS",
                        help="a frame counts from this long after the lens reached a position (as acquire --settle)")
    parser.add_argument("--step-um", type=float, default=None,
                        help="micrometres per motor step (default: the sensor's)")
    parser.add_argument("--um-per-px", type=float, default=None, help="pixel size of the frames, for stack.yaml")


def _joint_position(msg, joint: str) -> float | None:
    names = list(msg.name)
    index = names.index(joint) if joint in names else (0 if not joint and names else None)
    return float(msg.position[index]) if index is not None and index < len(msg.position) else None


def bag_to_stack(bag: Path, dataset: Path, plate: str, stack: str, image_topic: str = "camera/image_raw",
                 joint_topic: str = "stepper/joint_states", joint: str = "focus", settle_s: float | None = None,
                 step_um: float | None = None, um_per_px: float | None = None):
    """Write the bag's sweep as ``DATASET/plates/<plate>/<stack>``; returns the :class:`SweepRecording`.

    Raises :class:`recording.BagError` (unreadable bag, missing topic, no sweep), :class:`AcquireError`
    (the stack exists) or :class:`DatasetError` (a plate or stack name that is not one directory name); nothing is
    written then.
    """
    from ..core.acquisition import DEFAULT_SETTLE_S, RestTracker, SweepPlan, sweep_positions
    from ..core.dataset.layout import stack_dir
    from ..core.dataset.sweep import SweepRecording
    from ..core.sensor import STEP_UM
    from ..recording import (COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, JOINT_STATE_TYPE, BagError, BagReader,
                             image_from_msg, stamp_ns)

    settle_s = DEFAULT_SETTLE_S if settle_s is None else settle_s
    path = stack_dir(dataset, plate, stack)
    SweepRecording.inspect(path, resume=False)
    with BagReader(bag) as reader:
        images, _ = reader.require(image_topic, (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE))
        joints, _ = reader.require(joint_topic, (JOINT_STATE_TYPE,))
        samples, frames, camera = [], [], {}
        for topic, msgtype, _, msg in reader.messages([images, joints]):
            if topic == joints:
                position = _joint_position(msg, joint)
                if position is not None:
                    samples.append((stamp_ns(msg.header), position))
            else:
                frames.append(stamp_ns(msg.header))
                camera = camera or {"topic": images, "encoding": getattr(msg, "encoding", getattr(msg, "format", "")),
                                    "width_px": int(getattr(msg, "width", 0)),
                                    "height_px": int(getattr(msg, "height", 0)), "frame_id": msg.header.frame_id}
        tracker = RestTracker()
        for t_ns, position in sorted(samples, key=lambda s: s[0]):
            tracker.add(t_ns, position)
        sweep = sweep_positions(tracker.rests, frames, settle_s)
        if len(sweep) < 2:
            raise BagError(f"bag {bag}: no sweep found ({len(samples)} samples of joint {joint or '#0'!r} on "
                           f"{joints}, {len(frames)} frames on {images}, {len(tracker.rests)} positions; a sweep is "
                           f"two or more evenly spaced positions each held {settle_s:g} s with a frame)")
        z_steps = [rest.position_steps for rest, _ in sweep]
        low, high, step = min(z_steps), max(z_steps), abs(z_steps[1] - z_steps[0])
        meta = {"step_um": float(STEP_UM if step_um is None else step_um), "plate": plate, "stack": stack,
                "acquired_by": "celegans-autofocus bag-to-dataset", "source_bag": str(bag),
                "sweep": {**SweepPlan(low, high, step).to_meta(), "settle_s": float(settle_s)},
                "camera": camera}
        if um_per_px is not None:
            meta["um_per_px"] = float(um_per_px)
        wanted = {stamp: rest for rest, stamp in sweep}
        recording = SweepRecording(path, meta)
        recording.start()
        try:
            for _, msgtype, _, msg in reader.messages([images]):
                rest = wanted.pop(stamp_ns(msg.header), None)
                if rest is not None:
                    stamp = stamp_ns(msg.header)
                    recording.add(rest.position_steps, image_from_msg(msg, msgtype), {
                        "motor_steps": rest.position_steps, "stamp_s": stamp * 1e-9,
                        "time": _dt.datetime.fromtimestamp(stamp * 1e-9, _dt.timezone.utc).isoformat(
                            timespec="milliseconds").replace("+00:00", "Z")})
            recording.finish()
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # the stack is new (inspect refused an existing one)
            raise
    return recording


def run(args: argparse.Namespace) -> int:
    from ..core.acquisition import AcquireError
    from ..core.dataset.errors import DatasetError
    from ..core.images import ImageError
    from ..recording import BagError
    from .acquire import option_problem

    problem = option_problem(args.settle_s, um_per_px=args.um_per_px, step_um=args.step_um)
    if problem:
        print(f"bag-to-dataset: {problem}", file=sys.stderr)
        return 2
    stack = args.stack or args.bag.resolve().name
    try:  # a bad plate or stack name (DatasetError) is refused before anything is read or written
        recording = bag_to_stack(args.bag, args.dataset, args.plate, stack, args.image_topic, args.joint_topic,
                                 args.joint, args.settle_s, args.step_um, args.um_per_px)
    except (AcquireError, BagError, DatasetError, ImageError, OSError) as exc:
        print(f"bag-to-dataset: {exc}", file=sys.stderr)
        return 1
    plan = recording.plan
    print(f"stack: {recording.path}  ({len(recording.taken())} images, z {plan.first_steps}..{plan.last_steps} "
          f"step {plan.step_steps}{'' if recording.meta.get('complete') else ', INCOMPLETE'})")
    return 0 if recording.meta.get("complete") else 1
