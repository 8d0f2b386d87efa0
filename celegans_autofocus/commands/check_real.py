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

"""``celegans-autofocus check-real FOLDER``: a model's answers on your sharp worm frames, which should be near 0.

FOLDER (searched recursively; each folder holding images is one source) holds frames of worms IN FOCUS, any image
files. :mod:`core.real_frames` brings each to the model's pixel size (``--um-per-px``, else a ``frames.yaml``'s
``um_per_px``, else an estimate from the worm width), the detector finds the worms, and the model reads ``--fov``
px windows around the largest one, as worm_detector_node crops them. Per source and window: detector hits, the
median answer, p10..p90, the share within +-20 steps and the median sigma. On a sharp worm the right answer is
near 0 (the depth of field is ~17 steps). A sanity floor, not a metric to train on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.metrics import SIGN_THRESHOLD_STEPS

HELP = "a model's answers on folders of sharp real worm frames (near 0 is right)"
NEAR_STEPS = SIGN_THRESHOLD_STEPS  # "near focus": the metrics' own +-20 steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="folder of in-focus worm frames (searched recursively)")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    parser.add_argument("--fov", type=int, nargs="+", default=[250, 375, 500],
                        help="crop sides in px at the model's pixel size (worm_detector_node's fov_px: 500)")
    parser.add_argument("--um-per-px", type=float, default=None,
                        help="pixel size of every frame (overrides frames.yaml and the estimate)")


def report(root: Path, predictor, fovs: list[int], um_per_px: float | None = None) -> list[str]:
    """Markdown lines: the header and one row per source and window (``predictor``: a FocusPredictor).

    :class:`core.real_frames.FramesError` when a frames.yaml is bad or no frame at all could be read.
    """
    import numpy as np

    from ..core.images import ImageError
    from ..core.real_frames import FramesError, frame_crops

    sigma_col = predictor.has_sigma
    rows, n_frames = [], 0
    for name, found_per_frame in frame_crops(root, fovs, um_per_px):
        answers, frames, hits = {fov: [] for fov in fovs}, 0, 0
        for found in found_per_frame:
            frames += 1
            if found is None:
                continue
            hits += 1
            for fov, crop in found.items():
                try:
                    answers[fov].append(predictor.predict_with_sigma(crop))
                except ImageError:  # a crop too small or thin for the model: no answer ("-" when none)
                    continue
        n_frames += frames
        for fov in fovs:
            p = np.array([offset for offset, _ in answers[fov]])
            sigma = [s for _, s in answers[fov]]
            if not len(p):
                rows.append(f"| {name} | {frames} | {hits} | {fov} | - | - | - |" + (" - |" if sigma_col else ""))
                continue
            rows.append(f"| {name} | {frames} | {hits} | {fov} | {np.median(p):+.1f} | "
                        f"{np.percentile(p, 10):+.1f}..{np.percentile(p, 90):+.1f} | "
                        f"{np.mean(np.abs(p) <= NEAR_STEPS):.2f} |"
                        + (f" {np.median(sigma):.1f} |" if sigma_col else ""))
    if not n_frames:
        raise FramesError(f"{root}: no frame could be read (the unreadable files are named above)")
    head = [f"model {predictor.name}; {n_frames} frames; right answer near 0 (|offset| <= {NEAR_STEPS:g} steps)", "",
            "| folder | frames | detector hits | fov px | median offset (steps) | p10..p90 | share within +-20 |"
            + (" median sigma (steps) |" if sigma_col else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if sigma_col else "")]
    return head + rows


def run(args: argparse.Namespace) -> int:
    from ..core.predictor import FocusPredictor, ModelError, default_model_path
    from ..core.real_frames import FramesError, check_um_per_px, image_folders

    if any(f < 32 for f in args.fov):
        print("check-real: --fov must be >= 32 px", file=sys.stderr)
        return 2
    try:
        if args.um_per_px is not None:
            check_um_per_px(args.um_per_px, "--um-per-px")
        if not args.folder.is_dir() or not image_folders(args.folder):
            raise FramesError(f"no images under {args.folder}")
        predictor = FocusPredictor(args.model or default_model_path(), providers=["CPUExecutionProvider"])
        lines = report(args.folder, predictor, args.fov, args.um_per_px)
    except FramesError as exc:
        print(f"check-real: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"check-real: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
