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

"""Crop stacks around each worm of a full-frame stack (the paper's augmentation).

Worms are detected once per stack, on the reference image: the z nearest the stack's best index
(:func:`.labels.best_index`), else the middle of the stack. Each detected worm k (largest first)
gets one crop stack per field of view, ``plates/<plate>/<stack>__crop<fov>_w<k>/``, cut with ONE
fixed window for every z so that only focus changes along the stack. Its ``stack.yaml`` records
parent, window_px, fov_px, step_um, the detection, and copies :data:`COPIED_KEYS` from the parent.
Crops keep the source's pixel type. The detector's sizes follow the stack's ``um_per_px``.
"""
from __future__ import annotations

import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..detection import DetectorConfig, WormDetector, crop_image, crop_window
from ..images import ImageError
from ..sensor import UM_PER_PX
from .io import read_image
from .labels import LabelRow, best_index
from .layout import Stack, step_um
from .writer import StackWriter

CROP_TAG = "__crop"
#: stack.yaml keys a crop stack inherits from its parent
COPIED_KEYS = ("best_index", "true_best_index", "um_per_px")


def is_crop_parent(stack: Stack) -> bool:
    """Whether crops are cut from this stack (a full-frame stack, not itself a crop)."""
    return stack.kind == "full" and CROP_TAG not in stack.name


@dataclass
class Cropper:
    """Writes the crop stacks of full stacks one at a time; collects problems instead of stopping.

    ``labels``: the dataset's labels.csv rows (best index of stacks whose stack.yaml has none).
    Existing crop stacks of a field of view are left alone unless ``overwrite``.
    """

    fovs: list[int]
    max_worms: int | None = None
    overwrite: bool = False
    labels: list[LabelRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    detectors: dict[float, WormDetector] = field(default_factory=dict)

    def detector(self, stack: Stack) -> WormDetector:
        """Return the worm detector for this stack's pixel size (``um_per_px`` in stack.yaml, else the sensor's)."""
        um_per_px = float(stack.meta.get("um_per_px", UM_PER_PX))
        if um_per_px not in self.detectors:
            self.detectors[um_per_px] = WormDetector(DetectorConfig().scaled(UM_PER_PX / um_per_px))
        return self.detectors[um_per_px]

    def reference_z(self, stack: Stack) -> int:
        """Return the z nearest the stack's best index, else the middle of the stack."""
        best = best_index(stack.meta, stack.key, self.labels)
        z_steps = stack.z_steps
        if best is None:
            return z_steps[len(z_steps) // 2]
        return min(z_steps, key=lambda z: (abs(z - best.z_index), z))

    def plan(self, stack: Stack, ref_z: int, ref: np.ndarray, worms) -> list[tuple[Path, dict]]:
        """(output directory, stack.yaml) of every crop stack to write for this stack."""
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
                        "fov_px": fov, "step_um": step_um(stack.meta), "reference_z": ref_z,
                        "detection": {"centroid_px": [round(v, 1) for v in worm.centroid_px],
                                      "bbox_px": list(worm.bbox_px), "area_px": worm.area_px}}
                meta.update({key: stack.meta[key] for key in COPIED_KEYS if key in stack.meta})
                plans.append((stack.path.parent / f"{stack.name}{CROP_TAG}{fov}_w{k}", meta))
        return plans

    def crop(self, stack: Stack, progress: Callable[[int], None] | None = None) -> int:
        """Write the crop stacks of one full stack; returns how many were written.

        ``progress(n)`` is called with the number of the stack's images just processed.
        """
        def advance(n: int = 1) -> None:
            if progress is not None:
                progress(n)

        ref_z = self.reference_z(stack)
        try:
            ref = read_image(stack.files[ref_z])
        except ImageError as exc:
            self.problems.append(f"{exc}; reference image unreadable, {stack.name} not cropped")
            advance(len(stack.files))
            return 0
        worms = self.detector(stack).detect(ref)[: self.max_worms]
        if not worms:
            self.problems.append(f"{stack.files[ref_z]}: no worm detected, {stack.name} not cropped")
        plans = self.plan(stack, ref_z, ref, worms) if worms else []
        if not plans:
            advance(len(stack.files))
            return 0
        with ExitStack() as context:
            writers = [context.enter_context(StackWriter(out, meta)) for out, meta in plans]
            for z, path in stack.files.items():
                advance()
                try:
                    image = ref if z == ref_z else read_image(path)
                except ImageError as exc:
                    self.problems.append(f"{exc}; skipped in the crops")
                    continue
                if image.shape != ref.shape:
                    self.problems.append(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the "
                                         f"reference {ref.shape[1]}x{ref.shape[0]}; skipped in the crops")
                    continue
                for writer, (_, meta) in zip(writers, plans):
                    writer.add(z, crop_image(image, meta["window_px"]))
        written = {out for out, _ in plans}
        for fov in {meta["fov_px"] for _, meta in plans}:
            for old in stack.path.parent.glob(f"{stack.name}{CROP_TAG}{fov}_w*"):
                if old not in written:  # fewer worms than last time: drop the extra old crops
                    shutil.rmtree(old)
        return len(plans)
