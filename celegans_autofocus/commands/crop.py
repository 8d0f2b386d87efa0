"""``celegans-autofocus crop DATASET --fov 500``: cropped stacks around each worm (the paper's augmentation).

For every full-frame stack, worms are detected once, on the reference image: the z nearest the
``best_index`` of ``stack.yaml``, else of ``labels.csv``, else the middle of the stack. Each
detected worm k (largest first, up to ``--max-worms``) gets one crop stack per field of view,
``plates/<plate>/<stack>__crop<fov>_w<k>/``, cut with ONE fixed window for every z so that only
focus changes along the stack. Its ``stack.yaml`` records parent, window_px, fov_px, step_um, the
detection, and copies best_index / true_best_index from the parent. Crops are grayscale PNG of
the source bit depth. Existing crop stacks are left alone unless ``--overwrite``. The detector's
sizes follow ``um_per_px`` from ``stack.yaml`` (default 1.55, the full-frame reference).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

HELP = "write cropped z-stacks centred on each detected worm (fixed window per stack)"
CROP_TAG = "__crop"
#: stack.yaml keys a crop stack inherits from its parent
COPIED_KEYS = ("best_index", "true_best_index", "um_per_px")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("dataset", type=Path, help="dataset root holding plates/<plate>/<stack>/z_<index>.png")
    crop = parser.add_argument_group("cropping")
    crop.add_argument("--fov", type=int, action="append", required=True, metavar="PX",
                      help="side of the square crop in the images' px (repeat for several: 500 750 1000 1250)")
    crop.add_argument("--max-worms", type=int, default=None, help="crop at most this many worms per stack")
    crop.add_argument("--overwrite", action="store_true", help="replace crop stacks that already exist")
    crop.add_argument("--quiet", action="store_true", help="no progress bar and no per-file messages")


@dataclass
class _Cropper:
    """Crops full stacks one at a time; collects problems instead of stopping."""

    fovs: list[int]
    max_worms: int | None
    overwrite: bool
    labels: list
    problems: list[str] = field(default_factory=list)
    detectors: dict = field(default_factory=dict)

    def detector(self, stack):
        """The worm detector for this stack's pixel size (``um_per_px`` in stack.yaml, else the reference)."""
        from ..core.detection import REFERENCE_UM_PER_PX, DetectorConfig, WormDetector

        um_per_px = float(stack.meta.get("um_per_px", REFERENCE_UM_PER_PX))
        if um_per_px not in self.detectors:
            self.detectors[um_per_px] = WormDetector(DetectorConfig().scaled(REFERENCE_UM_PER_PX / um_per_px))
        return self.detectors[um_per_px]

    def reference_z(self, stack) -> int:
        """The z nearest the best plane (stack.yaml, else labels.csv), else the middle of the stack."""
        best = stack.meta.get("best_index")
        if best is None:
            best = next((r.best_index for r in self.labels if (r.plate, r.stack) == stack.key), None)
        z_steps = stack.z_steps
        if best is None:
            return z_steps[len(z_steps) // 2]
        return min(z_steps, key=lambda z: (abs(z - best), z))

    def plan(self, stack, ref_z: int, ref, worms) -> list[tuple[Path, dict]]:
        """(output directory, stack.yaml) of every crop stack to write for this stack."""
        from ..core.detection import crop_window

        plans = []
        for fov in self.fovs:
            if fov > min(ref.shape):
                self.problems.append(f"{stack.path}: --fov {fov} does not fit in the "
                                     f"{ref.shape[1]}x{ref.shape[0]} frame")
                continue
            existing = sorted(stack.path.parent.glob(f"{stack.name}{CROP_TAG}{fov}_w*"))
            if existing and not self.overwrite:
                self.problems.append(f"{existing[0]}: exists, use --overwrite to replace; "
                                     f"{stack.name} not cropped at fov {fov}")
                continue
            for k, worm in enumerate(worms):
                meta = {"parent": stack.name, "window_px": list(crop_window(worm.centroid_px, fov, ref.shape)),
                        "fov_px": fov, "step_um": float(stack.meta.get("step_um", 5.0)), "reference_z": ref_z,
                        "detection": {"centroid_px": [round(v, 1) for v in worm.centroid_px],
                                      "bbox_px": list(worm.bbox_px), "area_px": worm.area_px}}
                meta.update({key: stack.meta[key] for key in COPIED_KEYS if key in stack.meta})
                plans.append((stack.path.parent / f"{stack.name}{CROP_TAG}{fov}_w{k}", meta))
        return plans

    def crop(self, stack, bar) -> int:
        """Write the crop stacks of one full stack; returns how many were written."""
        import numpy as np
        import yaml

        from ..core.detection import crop_image
        from ..core.images import ImageError
        from ..core.stacks import image_suffix, read_image, write_image

        ref_z = self.reference_z(stack)
        try:
            ref = read_image(stack.files[ref_z])
        except ImageError as exc:
            self.problems.append(f"{exc}; reference image unreadable, {stack.name} not cropped")
            bar.update(len(stack.files))
            return 0
        worms = self.detector(stack).detect(ref)[: self.max_worms]
        if not worms:
            self.problems.append(f"{stack.files[ref_z]}: no worm detected, {stack.name} not cropped")
        plans = self.plan(stack, ref_z, ref, worms) if worms else []
        tmps = [out.parent / f".{out.name}.tmp" for out, _ in plans]
        try:
            for tmp, (_, meta) in zip(tmps, plans):
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                (tmp / "stack.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
            for z, path in stack.files.items():
                bar.update(1)
                if not plans:
                    continue
                try:
                    image = ref if z == ref_z else read_image(path)
                except ImageError as exc:
                    self.problems.append(f"{exc}; skipped in the crops")
                    continue
                if image.shape != ref.shape:
                    self.problems.append(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the "
                                         f"reference {ref.shape[1]}x{ref.shape[0]}; skipped in the crops")
                    continue
                for tmp, (_, meta) in zip(tmps, plans):
                    window = crop_image(image, meta["window_px"])
                    write_image(tmp / f"z_{z}{image_suffix(image)}", np.ascontiguousarray(window))
            for tmp, (out, _) in zip(tmps, plans):
                if out.exists():
                    shutil.rmtree(out)
                tmp.rename(out)
        finally:
            for tmp in tmps:
                shutil.rmtree(tmp, ignore_errors=True)
        written = {out for out, _ in plans}
        for fov in {meta["fov_px"] for _, meta in plans}:
            for old in stack.path.parent.glob(f"{stack.name}{CROP_TAG}{fov}_w*"):
                if old not in written:  # fewer worms than last time: drop the extra old crops
                    shutil.rmtree(old)
        return len(plans)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.stacks import LABELS_FILE, DatasetError, discover, read_labels

    bad = [f"--fov {f}" for f in args.fov if f <= 0]
    if args.max_worms is not None and args.max_worms < 1:
        bad.append(f"--max-worms {args.max_worms}")
    if bad:
        print(f"crop: {bad[0]} must be positive", file=sys.stderr)
        return 2
    try:
        found = discover(args.dataset)
        labels_path = args.dataset / LABELS_FILE
        labels = read_labels(labels_path) if labels_path.exists() else []
    except DatasetError as exc:
        print(f"crop: {exc}", file=sys.stderr)
        return 1
    parents = [s for s in found.stacks if s.kind == "full" and CROP_TAG not in s.name]
    if not parents:
        print(f"crop: no full-frame stacks under {args.dataset / 'plates'}", file=sys.stderr)
        return 1
    cropper = _Cropper(sorted(set(args.fov)), args.max_worms, args.overwrite, labels,
                       problems=list(found.warnings) + list(found.failed.values()))
    written = 0
    with tqdm(total=sum(len(s.files) for s in parents), unit="img", desc="crop", disable=args.quiet) as bar:
        for stack in parents:
            written += cropper.crop(stack, bar)
    problems = cropper.problems
    if not args.quiet:
        for msg in problems:
            print(f"warning: {msg}", file=sys.stderr)
    print(f"crop: {written} crop stacks written from {len(parents)} full stacks at fov {cropper.fovs} px "
          f"({len(problems)} problems); run `celegans-autofocus label {args.dataset}` to label them")
    return 0 if written and not problems else 1
