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

"""``celegans-autofocus crop DATASET --fov 500``: cropped stacks around each worm (the paper's augmentation).

The cropping is :mod:`core.dataset.crops`: one fixed window per worm and field of view for every z,
written as ``plates/<plate>/<stack>__crop<fov>_w<k>/``. Existing crop stacks are left alone unless
``--overwrite``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write cropped z-stacks centred on each detected worm (fixed window per stack)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("dataset", type=Path, help="dataset root holding plates/<plate>/<stack>/z_<index>.png")
    crop = parser.add_argument_group("cropping")
    crop.add_argument("--fov", type=int, action="append", required=True, metavar="PX",
                      help="side of the square crop in the images' px (repeat for several: 500 750 1000 1250)")
    crop.add_argument("--max-worms", type=int, default=None, help="crop at most this many worms per stack")
    crop.add_argument("--overwrite", action="store_true", help="replace crop stacks that already exist")
    crop.add_argument("--quiet", action="store_true", help="no progress bar and no per-file messages")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.dataset.crops import Cropper, is_crop_parent
    from ..core.dataset.errors import DatasetError
    from ..core.dataset.labels import read_dataset_labels
    from ..core.dataset.layout import discover

    bad = [f"--fov {f}" for f in args.fov if f <= 0]
    if args.max_worms is not None and args.max_worms < 1:
        bad.append(f"--max-worms {args.max_worms}")
    if bad:
        print(f"crop: {bad[0]} must be positive", file=sys.stderr)
        return 2
    try:
        found = discover(args.dataset)
        labels = read_dataset_labels(args.dataset)
    except DatasetError as exc:
        print(f"crop: {exc}", file=sys.stderr)
        return 1
    parents = [s for s in found.stacks if is_crop_parent(s)]
    if not parents:
        print(f"crop: no full-frame stacks under {args.dataset / 'plates'}", file=sys.stderr)
        return 1
    cropper = Cropper(sorted(set(args.fov)), args.max_worms, args.overwrite, labels,
                      problems=list(found.warnings) + list(found.failed.values()))
    written = 0
    with tqdm(total=sum(len(s.files) for s in parents), unit="img", desc="crop", disable=args.quiet) as bar:
        for stack in parents:
            written += cropper.crop(stack, bar.update)
    problems = cropper.problems
    if not args.quiet:
        for msg in problems:
            print(f"warning: {msg}", file=sys.stderr)
    print(f"crop: {written} crop stacks written from {len(parents)} full stacks at fov {cropper.fovs} px "
          f"({len(problems)} problems); run `celegans-autofocus label {args.dataset}` to label them")
    return 0 if written and not problems else 1
