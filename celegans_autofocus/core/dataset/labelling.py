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

"""Labelling a dataset: the focus measures of every image, each stack's best z and flags, ``labels.csv``."""
from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from ..focus import AUTO, RULE_CURVES, RULE_MEASURES, best_plane, get_measure, measure_values, noise_dominated
from ..images import ImageError
from ..metrics import DOF_STEPS
from .errors import DatasetError, StackError
from .io import read_image
from .labels import LABELS_FILE, LabelRow, focus_curve_ambiguity, hole_next_to, read_labels, write_labels
from .layout import Stack, discover

MIN_IMAGES = 3
#: Two estimates of a stack's best z agree within this many steps (the in-focus half depth of field).
AGREE_STEPS = DOF_STEPS / 2

#: ``progress(images_done, images_total)``
Progress = Callable[[int, int], None]


def check_labeller(measure: str) -> None:
    """Raise ValueError unless ``measure`` is a focus measure name or :data:`core.focus.AUTO`."""
    if measure != AUTO:
        get_measure(measure)


def measure_names(measure: str) -> tuple[str, ...]:
    """Return the focus measures labeller ``measure`` reads on every image (the raw RULE_MEASURES for AUTO).

    AUTO's pre-filtered curves (the rest of RULE_CURVES) are measured only for noise-dominated stacks
    (:func:`measure_stack`).
    """
    return RULE_MEASURES if measure == AUTO else (measure,)


def sweep_measure_names(measure: str) -> tuple[str, ...]:
    """Return the focus measures one pass over a recorded sweep takes for labeller ``measure`` (``bag-eval``).

    AUTO's are all of RULE_CURVES: a replay cannot go back for the pre-filtered curves of a noise-dominated
    sweep, so it reads the stack as :func:`measure_stack` does, whatever the noise. ValueError for an unknown one.
    """
    check_labeller(measure)
    return RULE_CURVES if measure == AUTO else measure_names(measure)


@dataclass
class Measured:
    """Focus-measure values (name -> z -> value) of one stack's readable images, and the skipped files.

    ``measure`` is one focus measure, or :data:`core.focus.AUTO` with the :data:`core.focus.RULE_MEASURES` (and,
    for a noise-dominated stack, the rest of :data:`core.focus.RULE_CURVES`).
    """

    stack: Stack
    measure: str
    curves: dict[str, dict[int, float]]
    skipped: list[str]

    @property
    def z_steps(self) -> list[int]:
        return sorted(next(iter(self.curves.values()), {}))


def measure_stack(stack: Stack, measure: str, on_image: Callable[[], None] | None = None,
                  agree_steps: float = AGREE_STEPS) -> Measured:
    """Compute the focus measure(s) of every readable image of ``stack`` (full resolution); bad files skipped.

    For AUTO, a stack whose raw curves are noise-dominated (:func:`core.focus.noise_dominated`) is read a
    second time for the pre-filtered curves :func:`core.focus.best_plane` then reads (all of RULE_CURVES).
    """
    check_labeller(measure)
    measured = _measure(stack, measure, measure_names(measure), stack.files, on_image)
    z = np.array(measured.z_steps)
    if measure == AUTO and z.size >= MIN_IMAGES and noise_dominated(
            z, {m: np.array([measured.curves[m][k] for k in z]) for m in RULE_MEASURES}, agree_steps):
        coarse = _measure(stack, measure, RULE_CURVES[len(RULE_MEASURES):], {k: stack.files[k] for k in z}, None)
        if coarse.z_steps == measured.z_steps:  # else an image changed meanwhile: the raw reading, flagged noisy
            measured.curves.update(coarse.curves)
    return measured


def _measure(stack: Stack, measure: str, names: tuple[str, ...], files: Mapping[int, Path],
             on_image: Callable[[], None] | None) -> Measured:
    """Measure ``names`` on the images ``files`` (z -> path) of ``stack``; unreadable and odd-sized files skipped."""
    curves: dict[str, dict[int, float]] = {name: {} for name in names}
    shapes: dict[int, tuple[int, ...]] = {}
    skipped: list[str] = []
    for z, path in files.items():
        try:
            image = read_image(path)
            values = measure_values(image, names)
            bad = [name for name, v in values.items() if not math.isfinite(v)]
            if bad:
                raise ImageError(f"{path}: {bad[0]} is not finite ({values[bad[0]]})")
            for name, v in values.items():
                curves[name][z] = v
            shapes[z] = image.shape
        except ImageError as exc:
            skipped.append(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}")
        if on_image is not None:
            on_image()
    if shapes:
        shape = Counter(shapes.values()).most_common(1)[0][0]
        for z in [z for z, s in shapes.items() if s != shape]:
            skipped.append(f"{stack.files[z]}: size {shapes[z][1]}x{shapes[z][0]} differs from the "
                           f"stack's {shape[1]}x{shape[0]}")
            for curve in curves.values():
                del curve[z]
    return Measured(stack, measure, curves, skipped)


@dataclass
class StackResult:
    """The labels of one stack and what went wrong with individual files."""

    stack: Stack
    rows: list[LabelRow]
    skipped: list[str]
    best_from: str  # "stack.yaml" or the labeller (measure name or AUTO)
    ambiguous_reason: str | None
    measured_best: int  # the labeller's best z (what best_index is unless stack.yaml gives one)
    mode: str | None = None  # AUTO's contrast mode ("emission", "absorption", "phase"), else None
    curves: dict[str, dict[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Pick:
    """A focus curve set's best z, the curve it was read from, AUTO's contrast mode (else None), why it is flagged."""

    z_index: int
    measure: str
    mode: str | None
    reason: str | None


def pick_best(z_steps: np.ndarray, curves: Mapping[str, np.ndarray], measure: str, holes: Iterable[int] = (),
              agree_steps: float = AGREE_STEPS) -> Pick:
    """Find the best z of one z series and flag it: the rule of ``label`` (and ``bag-eval``'s sweep).

    ``curves``: measure name -> values at ``z_steps`` (ascending), the :data:`core.focus.RULE_CURVES`
    for AUTO (:func:`core.focus.best_plane`, flagged when the measures disagree), else ``measure``'s
    (its argmax). Either way the focus-curve checks (flat, peak at an end, a second peak, a hole in
    ``holes`` next to the peak) flag it too.
    """
    z = np.asarray(z_steps)
    if measure == AUTO:
        plane = best_plane(z, curves, agree_steps)
        used = plane.measure
        checks = (plane.disagreement, hole_next_to(z, plane.z_index, holes) if plane.mode == "phase"
                  else focus_curve_ambiguity(z, curves[used], holes))
        return Pick(plane.z_index, used, plane.mode, next((r for r in checks if r), None))
    values = np.asarray(curves[measure])
    return Pick(int(z[int(np.argmax(values))]), measure, None, focus_curve_ambiguity(z, values, holes))


def label_measured(measured: Measured, use_stack_best: bool = True, agree_steps: float = AGREE_STEPS) -> StackResult:
    """Label a stack from its measure values.

    The labeller's best z is the measure's argmax, or :func:`core.focus.best_plane` for AUTO (flagged
    when the other measures do not back it within ``agree_steps``). best_index is stack.yaml's (if
    given and ``use_stack_best``) or that z; the curve's ambiguity is checked either way.
    :class:`StackError` if too few images.
    """
    stack = measured.stack
    z = np.array(measured.z_steps)
    if z.size < MIN_IMAGES:
        raise StackError(f"{stack.path}: only {z.size} readable image(s), need at least {MIN_IMAGES}")
    arrays = {name: np.array([curve[k] for k in z]) for name, curve in measured.curves.items()}
    holes = sorted(set(stack.missing_z) | (set(stack.files) - set(z.tolist())))
    pick = pick_best(z, arrays, measured.measure, holes, agree_steps)
    found, mode, used, reason = pick.z_index, pick.mode, pick.measure, pick.reason
    column = f"{AUTO}:{used}" if measured.measure == AUTO else used
    if use_stack_best and "best_index" in stack.meta:
        best, best_from = int(stack.meta["best_index"]), "stack.yaml"
    else:
        best, best_from = found, measured.measure
    rows = [LabelRow(stack.plate, stack.name, stack.files[k].name, int(k), best, best - int(k), column,
                     float(arrays[used][i]), stack.kind, stack.fov_px, reason is not None) for i, k in enumerate(z)]
    return StackResult(stack, rows, measured.skipped, best_from, reason, found, mode, measured.curves)


def label_stack(stack: Stack, measure: str, use_stack_best: bool = True,
                on_image: Callable[[], None] | None = None, agree_steps: float = AGREE_STEPS) -> StackResult:
    """Measure and label one stack (see :mod:`core.dataset`). Raises :class:`StackError` when it cannot."""
    return label_measured(measure_stack(stack, measure, on_image, agree_steps), use_stack_best, agree_steps)


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
    """Return the measure values of ``rows`` when the stack is unchanged since labels.csv was written.

    Only for a single measure: labels.csv keeps one value per image, and AUTO reads three.
    """
    if measure == AUTO or not rows or any(r.measure != measure for r in rows):
        return None
    if {r.file for r in rows} != {p.name for p in stack.files.values()}:
        return None
    paths = list(stack.files.values()) + [stack.path / "stack.yaml", stack.path]
    if any(p.stat().st_mtime_ns >= labels_mtime_ns for p in paths if p.exists()):
        return None
    return Measured(stack, measure, {measure: {r.z_index: r.measure_value for r in rows}}, [])


def label_dataset(dataset: Path, measure: str = AUTO, use_stack_best: bool = True, force: bool = False,
                  workers: int = 1, progress: Progress | None = None, agree_steps: float = AGREE_STEPS) -> LabelReport:
    """Label every stack of ``dataset`` and write ``labels.csv`` atomically; see :mod:`core.dataset`.

    ``measure``: a focus measure (its argmax) or AUTO (:func:`core.focus.best_plane`, the default).
    Unchanged stacks reuse the measure values stored in labels.csv (``force`` recomputes them);
    their labels are derived again, so ``use_stack_best`` applies to them too. ``progress`` is
    called with (images measured, images to measure), first with (0, total).
    """
    dataset = Path(dataset)
    check_labeller(measure)
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
            n = len(todo)
            for stack, res in zip(todo, pool.map(measure_stack, todo, [measure] * n, [None] * n, [agree_steps] * n)):
                advance(len(stack.files))
                measured.append(res)
    else:
        measured.extend(measure_stack(stack, measure, advance, agree_steps) for stack in todo)
    for m in measured:
        report.skipped_files.extend(m.skipped)
        try:
            result = label_measured(m, use_stack_best, agree_steps)
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
