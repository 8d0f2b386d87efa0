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

"""``celegans-autofocus synth OUT``: write synthetic z-stacks from the physical simulator."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.optics import ASPECT_TOLERANCE, LOOKS, MIN_OUT_PX, SIMULATOR_LOOK
from ..core.sensor import FULL_FRAME_WH_PX

HELP = "write synthetic brightfield z-stacks (the dataset layout) from the physical simulator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="new (or empty) dataset directory")
    g = parser.add_argument_group("dataset")
    g.add_argument("--plates", type=int, default=2, help="number of plates")
    g.add_argument("--stacks-per-plate", type=int, default=2, help="stacks per plate")
    g.add_argument("--range-steps", type=int, default=200, help="z indices span -R..+R motor steps")
    g.add_argument("--step-every", type=int, default=1, help="keep every k-th z index")
    g.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    g.add_argument("--worms", type=int, default=None, help="worms per stack (default: 1-3 at random)")
    g.add_argument("--look", default=SIMULATOR_LOOK, choices=list(LOOKS),
                   help="the specimen's and camera's look (core.optics.LOOKS; real_adult: fitted to real in-focus "
                        "adults, benchmarks/calibrate_optics.md; real_adult_mottled: with real plates' background "
                        "mottle; default: the first stages' look)")
    g = parser.add_argument_group("images")
    g.add_argument("--width", type=int, default=None,
                   help=f"stored image width in px (default {FULL_FRAME_WH_PX[0]}, full frame)")
    g.add_argument("--height", type=int, default=None,
                   help=f"stored image height in px (default {FULL_FRAME_WH_PX[1]})")


def frame_wh_px(width_px: int | None, height_px: int | None, full_wh_px: tuple[int, int]) -> tuple[int, int]:
    """Return the stored frame's (width, height) in px: the full frame's, or its aspect where one is not given.

    Raises ValueError, naming --width or --height, for a frame smaller than the renderer's least or larger than the
    camera's full frame, or for a width and height of another aspect than the full frame's.
    """
    full_w_px, full_h_px = full_wh_px
    w_px = full_w_px if width_px is None and height_px is None else width_px
    if w_px is None:
        w_px = round(height_px * full_w_px / full_h_px)
    h_px = round(w_px * full_h_px / full_w_px) if height_px is None else height_px
    both = width_px is not None and height_px is not None
    given = "--width and --height" if both else "--width" if width_px is not None else "--height"
    if not (MIN_OUT_PX <= w_px <= full_w_px and MIN_OUT_PX <= h_px <= full_h_px):
        raise ValueError(f"{given} must give a frame of {MIN_OUT_PX}x{MIN_OUT_PX} to {full_w_px}x{full_h_px} px "
                         f"(the camera's full frame), got {w_px}x{h_px}")
    if abs((full_w_px / w_px) / (full_h_px / h_px) - 1) > ASPECT_TOLERANCE:  # as the renderer checks it
        hint = "give one of them" if both else "a few px more or less keeps it"
        raise ValueError(f"{given} must keep the full frame's aspect ({full_w_px}x{full_h_px}) within "
                         f"{ASPECT_TOLERANCE:.0%}, got {w_px}x{h_px} ({hint})")
    return w_px, h_px


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.dataset.synthetic import check_new_output_dir, write_synthetic_dataset
    from ..core.optics import look_config

    config = look_config(args.look)
    try:
        width, height = frame_wh_px(args.width, args.height, (config.frame_width_px, config.frame_height_px))
        if args.plates < 1 or args.stacks_per_plate < 1 or args.step_every < 1 or args.range_steps < 0:
            raise ValueError("--plates, --stacks-per-plate and --step-every must be >= 1, --range-steps >= 0 "
                             f"(got {args.plates}, {args.stacks_per_plate}, {args.step_every}, {args.range_steps})")
        if args.worms is not None and args.worms < 0:
            raise ValueError(f"--worms must be >= 0, got {args.worms}")
        check_new_output_dir(args.out)
        n_images = args.plates * args.stacks_per_plate * len(range(-args.range_steps, args.range_steps + 1,
                                                                   args.step_every))
        with tqdm(total=n_images, unit="img", desc="synth", file=sys.stderr) as bar:
            stacks = write_synthetic_dataset(
                args.out, args.plates, args.stacks_per_plate, args.range_steps, args.step_every, args.seed,
                frame_shape=(height, width), n_worms=args.worms, config=config, progress=bar.update)
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(stacks)} stacks ({n_images} images, {width}x{height}) to {args.out}")
    return 0
