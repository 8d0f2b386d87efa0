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

"""Samples of a labelled z-stack dataset (:mod:`core.dataset`), the split by plate, and cached image sets.

A :class:`Sample` is one image file with its signed target ``offset_steps`` (steps to move
to reach focus). The target is the label from ``labels.csv`` or, where ``stack.yaml`` records
the simulator's ``true_best_index``, the exact truth (``target="truth"``; ``"auto"`` uses the
truth where known and the label elsewhere).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.dataset.errors import DatasetError, StackError
from ..core.dataset.io import read_image
from ..core.dataset.labels import FROM_TRUTH, LABELS_FILE, best_index, read_labels
from ..core.dataset.layout import plates_dir, read_stack_yaml, stack_dir, step_um
from ..core.dataset.splits import split_by_plate
from ..core.images import ImageError

__all__ = ["DatasetError", "Sample", "ImageSet", "load_samples", "split_plates", "read_gray", "data_hash",
           "dataset_step_um"]


def stack_meta(root: Path, plate: str, stack: str) -> dict:
    """Read the stack's ``stack.yaml`` as a dict ({} when absent); a broken one is a :class:`DatasetError`."""
    path = stack_dir(root, plate, stack) / "stack.yaml"
    try:
        return read_stack_yaml(path) if path.is_file() else {}
    except StackError as exc:
        raise DatasetError(str(exc)) from None


@dataclass(frozen=True)
class Sample:
    path: Path
    plate: str
    stack: str
    z_index: int
    offset_steps: float
    kind: str
    fov_px: int | None
    label_offset_steps: float
    true_offset_steps: float | None
    step_um: float
    ambiguous: bool = False  # the labeller flagged its stack (labels.csv)


@dataclass
class ImageSet:
    """Preprocessed images (float16, N x px x px) with their targets in steps and kinds."""

    images: np.ndarray
    offsets_steps: np.ndarray
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.offsets_steps)


def load_samples(root: Path | str, target: str = "auto") -> list[Sample]:
    """Every row of ``root/labels.csv`` as a :class:`Sample`; :class:`DatasetError` naming the file if unusable."""
    root = Path(root)
    labels = root / LABELS_FILE
    plates_dir(root)
    if not labels.is_file():
        raise DatasetError(f"{labels}: not found (run `celegans-autofocus label {root}` first)")
    rows = read_labels(labels)
    if not rows:
        raise DatasetError(f"{labels}: the dataset is empty (no labelled images)")
    metas: dict[tuple[str, str], dict] = {}
    samples = []
    for row in rows:
        if row.key not in metas:
            metas[row.key] = stack_meta(root, row.plate, row.stack)
        meta = metas[row.key]
        best = best_index(meta)
        truth = float(best.z_index - row.z_index) if best is not None and best.source == FROM_TRUTH else None
        if target == "truth" and truth is None:
            raise DatasetError(f"{stack_dir(root, row.plate, row.stack) / 'stack.yaml'}: "
                               f"no {FROM_TRUTH} (target=truth)")
        use_truth = truth is not None and target in ("auto", "truth")
        samples.append(Sample(
            path=row.path(root), plate=row.plate, stack=row.stack, z_index=row.z_index,
            offset_steps=truth if use_truth else float(row.offset_steps), kind=row.kind, fov_px=row.fov_px,
            label_offset_steps=float(row.offset_steps), true_offset_steps=truth, step_um=step_um(meta),
            ambiguous=row.ambiguous,
        ))
    return samples


def split_plates(samples: list[Sample], val_fraction: float, seed: int, source: str) -> tuple[list[str], list[str]]:
    """(train plates, validation plates); all plates validate when ``val_fraction == 1``."""
    plates = sorted({s.plate for s in samples})
    if val_fraction >= 1.0:
        return [], plates
    if len(plates) < 2:
        raise DatasetError(f"{source}: {len(plates)} plate(s) ({', '.join(plates)}); need >= 2 to split "
                           "train/validation by plate (or validate on all of them with --val-fraction 1 and "
                           "--synthetic-train N)")
    train, val = split_by_plate(plates, val_fraction, seed)
    train, val = sorted(train), sorted(val)
    if not train or not val or set(train) & set(val):
        raise DatasetError(f"{source}: cannot split plates {plates} with val_fraction={val_fraction}")
    return train, val


def read_gray(path: Path) -> np.ndarray:
    """Read a grayscale image file (8/16-bit, RGB by BT.601); :class:`DatasetError` naming it if unreadable."""
    try:
        return read_image(path)
    except ImageError as exc:
        raise DatasetError(str(exc)) from None


def dataset_step_um(samples: list[Sample], source: str) -> float | None:
    """Return the one ``step_um`` of these samples' stacks (None without samples).

    Mixed step sizes are a :class:`DatasetError`, since a model's offsets are in steps of one size.
    """
    sizes = sorted({s.step_um for s in samples})
    if len(sizes) > 1:
        raise DatasetError(f"{source}: stacks with different step_um {sizes}; train on one step size")
    return sizes[0] if sizes else None


def data_hash(samples: list[Sample], extra: str = "") -> str:
    """Short sha256 of the training rows (file, target) plus ``extra`` (e.g. the synthetic settings)."""
    digest = hashlib.sha256(extra.encode())
    for s in sorted(samples, key=lambda s: (s.plate, s.stack, s.z_index, s.path.name)):
        digest.update(f"{s.plate}/{s.stack}/{s.path.name}:{s.offset_steps:.3f};".encode())
    return digest.hexdigest()[:16]
