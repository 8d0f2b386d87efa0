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

"""Labelling a dataset: the focus measure of every image, each stack's best z, ``labels.csv``."""
from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..focus import get_measure
from ..images import ImageError
from .errors import DatasetError, StackError
from .io import read_image
from .labels import LABELS_FILE, LabelRow, focus_curve_ambiguity, read_labels, write_labels
from .layout import Stack, discover

MIN_IMAGES = 3

#: ``progress(images_done, images_total)``
Progress = Callable[[int, int], None]


@dataclass
class Measured:
    """Focus-measure values of one stack's readable images, and the files that were skipped."""

    stack: Stack
    measure: str
    values: dict[int, float]
    skipped: list[str]


def measure_stack(stack: Stack, measure: str, on_image: Callable[[], None] | None = None) -> Measured:
    """Compute the focus measure of every readable image of ``stack`` (full resolution); bad files skipped by name."""
    fn = get_measure(measure)
    values: dict[int, float] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    skipped: list[str] = []
    for z, path in stack.files.items():
        try:
            image = read_image(path)
            value = fn(image)
            if not math.isfinite(value):
                raise ImageError(f"{path}: {measure} is not finite ({value})")
            values[z], shapes[z] = value, image.shape
        except ImageError as exc:
            skipped.append(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}")
        if on_image is not None:
            on_image()
    if shapes:
        shape = Counter(shapes.values()).most_common(1)[0][0]
        for z in [z for z, s in shapes.items() if s != shape]:
            skipped.append(f"{stack.files[z]}: size {shapes[z][1]}x{shapes[z][0]} differs from the "
                           f"stack's {shape[1]}x{shape[0]}")
            del values[z]
    return Measured(stack, measure, values, skipped)


@dataclass
class StackResult:
    """The labels of one stack and what went wrong with individual files."""

    stack: Stack
    rows: list[LabelRow]
    skipped: list[str]
    best_from: str  # "stack.yaml" or the measure name
    ambiguous_reason: str | None


def label_measured(measured: Measured, use_stack_best: bool = True) -> StackResult:
    """Label a stack from its measure values.

    best_index from stack.yaml (if given and ``use_stack_best``) or the measure's argmax; the curve's
    ambiguity either way. :class:`StackError` if too few images.
    """
    stack, values = measured.stack, measured.values
    if len(values) < MIN_IMAGES:
        raise StackError(f"{stack.path}: only {len(values)} readable image(s), need at least {MIN_IMAGES}")
    z = np.array(sorted(values))
    curve = np.array([values[k] for k in z])
    holes = sorted(set(stack.missing_z) | (set(stack.files) - set(values)))
    reason = focus_curve_ambiguity(z, curve, holes)
    if use_stack_best and "best_index" in stack.meta:
        best, best_from = int(stack.meta["best_index"]), "stack.yaml"
    else:
        best, best_from = int(z[int(np.argmax(curve))]), measured.measure
    rows = [LabelRow(stack.plate, stack.name, stack.files[k].name, int(k), best, best - int(k), measured.measure,
                     float(values[k]), stack.kind, stack.fov_px, reason is not None) for k in z]
    return StackResult(stack, rows, measured.skipped, best_from, reason)


def label_stack(stack: Stack, measure: str, use_stack_best: bool = True,
                on_image: Callable[[], None] | None = None) -> StackResult:
    """Measure and label one stack (see :mod:`core.dataset`). Raises :class:`StackError` when it cannot."""
    return label_measured(measure_stack(stack, measure, on_image), use_stack_best)


@dataclass
class LabelReport:
    """What :func:`label_dataset` did.

    ``rows`` is exactly what was written to labels.csv; ``labelled`` holds every stack labelled this run,
    ``cached`` those whose measure values were reused.
    """

    rows: list[LabelRow] = field(default_factory=list)
    labelled: list[StackResult] = field(default_factory=list)
    cached: list[tuple[str, str]] = field(default_factory=list)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    kept_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)

    @property
    def ambiguous_stacks(self) -> list[tuple[str, str]]:
        return sorted({(r.plate, r.stack) for r in self.rows if r.ambiguous})

    @property
    def n_stacks(self) -> int:
        return len({(r.plate, r.stack) for r in self.rows})


def _cached_values(stack: Stack, rows: list[LabelRow], measure: str, labels_mtime_ns: int) -> Measured | None:
    """Return the measure values of ``rows`` when the stack is unchanged since labels.csv was written."""
    if not rows or any(r.measure != measure for r in rows):
        return None
    if {r.file for r in rows} != {p.name for p in stack.files.values()}:
        return None
    paths = list(stack.files.values()) + [stack.path / "stack.yaml", stack.path]
    if any(p.stat().st_mtime_ns >= labels_mtime_ns for p in paths if p.exists()):
        return None
    return Measured(stack, measure, {r.z_index: r.measure_value for r in rows}, [])


def label_dataset(dataset: Path, measure: str, use_stack_best: bool = True, force: bool = False,
                  workers: int = 1, progress: Progress | None = None) -> LabelReport:
    """Label every stack of ``dataset`` and write ``labels.csv`` atomically; see :mod:`core.dataset`.

    Unchanged stacks reuse the measure values stored in labels.csv (``force`` recomputes them);
    their labels are derived again, so ``use_stack_best`` applies to them too. ``progress`` is
    called with (images measured, images to measure), first with (0, total).
    """
    dataset = Path(dataset)
    get_measure(measure)
    found = discover(dataset)
    labels_path = dataset / LABELS_FILE
    old: dict[tuple[str, str], list[LabelRow]] = {}
    labels_mtime_ns = 0
    if labels_path.exists():
        for row in read_labels(labels_path):
            old.setdefault(row.key, []).append(row)
        labels_mtime_ns = labels_path.stat().st_mtime_ns
    if not found.stacks and not found.failed:
        raise DatasetError(f"no stacks found under {dataset / 'plates'}")

    report = LabelReport(warnings=list(found.warnings), failed=dict(found.failed))
    measured: list[Measured] = []
    todo = []
    for stack in found.stacks:
        cached = None if force else _cached_values(stack, old.get(stack.key, []), measure, labels_mtime_ns)
        if cached is None:
            todo.append(stack)
        else:
            measured.append(cached)
            report.cached.append(stack.key)
    total, done = sum(len(s.files) for s in todo), 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    advance(0)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for stack, res in zip(todo, pool.map(measure_stack, todo, [measure] * len(todo))):
                advance(len(stack.files))
                measured.append(res)
    else:
        measured.extend(measure_stack(stack, measure, on_image=advance) for stack in todo)
    for m in measured:
        report.skipped_files.extend(m.skipped)
        try:
            result = label_measured(m, use_stack_best)
        except StackError as exc:
            report.failed[m.stack.key] = str(exc)
            continue
        report.rows.extend(result.rows)
        report.labelled.append(result)
    for key in report.failed:
        report.kept_rows += len(old.get(key, []))
        report.rows.extend(old.get(key, []))
    on_disk = {s.key for s in found.stacks} | set(found.failed)
    for key in sorted(set(old) - on_disk):
        report.warnings.append(f"dropped {len(old[key])} label rows of {key[0]}/{key[1]}: "
                               f"the stack directory no longer exists")
    write_labels(labels_path, report.rows)
    return report
