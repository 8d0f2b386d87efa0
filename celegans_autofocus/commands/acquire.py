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

"""``celegans-autofocus acquire DATASET --plate P``: record a z-stack through the running nodes.

A command, not a node service: it runs beside ``ros2 launch`` (microscope or simulation) as a short-lived
ROS client (nodes/acquire_client.py), shows a progress bar, stops on Ctrl-C keeping every image taken, and
writes the dataset on the machine the user sits at. ROS services cannot report progress, and an action would
need interface packages this pure-Python package cannot build.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

DEFAULT_RANGE_STEPS = 200
DEFAULT_STEP_STEPS = 4
HELP = "sweep the focus motor of the running nodes through +-RANGE steps and record a z-stack into DATASET"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.acquisition import DEFAULT_SETTLE_S

    parser.add_argument("dataset", type=Path, help="dataset root; the stack goes to plates/<plate>/<stack>/")
    parser.add_argument("--plate", required=True, help="plate id (training splits by plate)")
    parser.add_argument("--stack", default=None,
                        help="stack name (default: the next free stack_NNN of the plate; with --resume, required)")
    parser.add_argument("--range", dest="range_steps", type=int, default=argparse.SUPPRESS, metavar="STEPS",
                        help="sweep from z - RANGE to z + RANGE around the lens' current z "
                        f"(default {DEFAULT_RANGE_STEPS}; a resumed sweep keeps its own)")
    parser.add_argument("--step", dest="step_steps", type=int, default=argparse.SUPPRESS, metavar="STEPS",
                        help=f"motor steps between images (default {DEFAULT_STEP_STEPS})")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted sweep of --stack: take only its missing positions")
    parser.add_argument("--settle", dest="settle_s", type=float, default=DEFAULT_SETTLE_S, metavar="SECONDS",
                        help="wait after the lens reaches a position before a frame counts")
    parser.add_argument("--crops", action="store_true",
                        help="also record worm_detector_node's crops (worm/crop) as <stack>__crop<fov>_tracked")
    parser.add_argument("--um-per-px", type=float, default=None, help="pixel size of the frames, for stack.yaml")
    parser.add_argument("--timeout", dest="timeout_s", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for the camera, the stepper or a move before giving up")
    ros = parser.add_argument_group("ROS graph")
    ros.add_argument("--namespace", default="", help="namespace of the running nodes ('' = root)")
    ros.add_argument("--stepper-node", default="stepper_controller_node", help="name of the stepper node")
    ros.add_argument("--image-topic", default="camera/image_raw", help="the camera's image topic")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def option_problem(settle_s: float, **positive: float | None) -> str | None:
    """Return what is wrong with a sweep's numeric options, or None: ``--settle`` >= 0, each of ``positive`` > 0.

    ``positive`` maps an option's name (``um_per_px`` for ``--um-per-px``) to its value, None where not given.
    """
    if not (math.isfinite(settle_s) and settle_s >= 0):
        return f"--settle must be a finite number of seconds >= 0, got {settle_s:g}"
    for name, value in positive.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"--{name.replace('_', '-')} must be a finite number > 0, got {value:g}"
    return None


def next_stack_name(plate_dir: Path) -> str:
    """Return the first ``stack_NNN`` not present in ``plate_dir``."""
    n = 0
    while (plate_dir / f"stack_{n:03d}").exists():
        n += 1
    return f"stack_{n:03d}"


def run(args: argparse.Namespace) -> int:
    from ..core.dataset.errors import DatasetError
    from ..core.dataset.layout import plate_dir, stack_dir

    if args.resume and not args.stack:
        print("acquire: --resume needs --stack (the unfinished stack's name)", file=sys.stderr)
        return 2
    try:  # checked before the ROS graph is touched: nothing moves, nothing is written
        stack = args.stack or next_stack_name(plate_dir(args.dataset, args.plate))
        stack_dir(args.dataset, args.plate, stack)
        problem = option_problem(args.settle_s, um_per_px=args.um_per_px, timeout=args.timeout_s)
    except DatasetError as exc:
        problem = str(exc)
    if problem:
        print(f"acquire: {problem}", file=sys.stderr)
        return 2

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from tqdm import tqdm

    from ..core.acquisition import AcquireError
    from ..nodes.acquire_client import AcquireClient, AcquireRequest

    range_steps, step_steps = getattr(args, "range_steps", None), getattr(args, "step_steps", None)
    if not args.resume:
        range_steps = DEFAULT_RANGE_STEPS if range_steps is None else range_steps
        step_steps = DEFAULT_STEP_STEPS if step_steps is None else step_steps
    request = AcquireRequest(args.dataset, args.plate, stack, range_steps, step_steps, resume=args.resume,
                             settle_s=args.settle_s, crops=args.crops, timeout_s=args.timeout_s,
                             um_per_px=args.um_per_px)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C must not take the graph away mid-sweep
    executor = SingleThreadedExecutor()
    client = AcquireClient(stepper_node=args.stepper_node, image_topic=args.image_topic, namespace=args.namespace)
    executor.add_node(client)
    bar = tqdm(unit="img", desc=f"acquire {args.plate}/{stack}", disable=args.quiet)

    def progress(done: int, total: int, z: int) -> None:
        bar.total = total
        bar.set_postfix_str(f"z {z}")
        bar.update(done - bar.n)

    try:
        result = client.acquire(request, progress)
    except AcquireError as exc:
        bar.close()
        print(f"acquire: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the sweep started: nothing moved, nothing written
        bar.close()
        print("acquire: interrupted before the sweep started; nothing recorded", file=sys.stderr)
        return 130
    finally:
        executor.remove_node(client)
        client.destroy_node()
        rclpy.try_shutdown()
    bar.close()
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"stack: {result.path}  ({result.taken} of {result.total} images, "
          f"{'complete' if result.complete else 'INCOMPLETE: --resume to finish'})")
    if result.crops_path is not None:
        print(f"crops: {result.crops_path}")
    print(f"lens back at z {result.returned_to_steps}")
    return 0 if result.complete and not result.problems else 1
