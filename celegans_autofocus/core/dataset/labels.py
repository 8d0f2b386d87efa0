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

"""``labels.csv`` (one row per labelled image), a stack's best index, and the focus-curve checks."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from ..atomic import atomic_path
from ..focus import prominence
from ..metrics import DOF_STEPS
from .errors import DatasetError
from .layout import stack_dir

LABEL_COLUMNS = ("plate", "stack", "file", "z_index", "best_index", "offset_steps", "measure",
                 "measure_value", "kind", "fov_px", "ambiguous")
LABELS_FILE = "labels.csv"
#: ambiguity thresholds (see :func:`focus_curve_ambiguity`)
FLAT_SNR = 6.0
FLAT_REL = 1e-3
PEAK_PROMINENCE_FRAC = 0.25
SECOND_PEAK_FRAC = 0.5


@dataclass(frozen=True)
class LabelRow:
    """One row of ``labels.csv``; ``file`` is the name inside ``plates/<plate>/<stack>/``."""

    plate: str
    stack: str
    file: str
    z_index: int
    best_index: int
    offset_steps: int
    measure: str
    measure_value: float
    kind: str
    fov_px: int | None
    ambiguous: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.plate, self.stack)

    def path(self, dataset: Path) -> Path:
        return stack_dir(dataset, self.plate, self.stack) / self.file

    def to_csv(self) -> dict[str, str]:
        return {"plate": self.plate, "stack": self.stack, "file": self.file, "z_index": str(self.z_index),
                "best_index": str(self.best_index), "offset_steps": str(self.offset_steps),
                "measure": self.measure, "measure_value": repr(float(self.measure_value)), "kind": self.kind,
                "fov_px": "" if self.fov_px is None else str(self.fov_px), "ambiguous": str(int(self.ambiguous))}

    @classmethod
    def from_csv(cls, rec: dict[str, str]) -> "LabelRow":
        row = cls(plate=rec["plate"], stack=rec["stack"], file=rec["file"], z_index=int(rec["z_index"]),
                  best_index=int(rec["best_index"]), offset_steps=int(rec["offset_steps"]),
                  measure=rec["measure"], measure_value=float(rec["measure_value"]), kind=rec["kind"],
                  fov_px=int(rec["fov_px"]) if rec["fov_px"] else None,
                  ambiguous=bool(int(rec["ambiguous"])))
        if row.kind not in ("full", "crop"):
            raise ValueError(f"kind must be full or crop, got {row.kind!r}")
        if row.offset_steps != row.best_index - row.z_index:
            raise ValueError(f"offset_steps {row.offset_steps} != best_index - z_index")
        return row


def read_labels(path: Path) -> list[LabelRow]:
    """Parse ``labels.csv``; :class:`DatasetError` names the file and line of any bad row."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(LABEL_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{path}: missing columns {sorted(missing)}")
            rows = []
            for rec in reader:
                try:
                    rows.append(LabelRow.from_csv(rec))
                except (TypeError, ValueError) as exc:
                    raise DatasetError(f"{path}, line {reader.line_num}: {exc}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read labels ({exc})") from None
    return rows


def read_dataset_labels(dataset: Path) -> list[LabelRow]:
    """Read the rows of ``DATASET/labels.csv``; none when the dataset is not labelled yet."""
    path = Path(dataset) / LABELS_FILE
    return read_labels(path) if path.exists() else []


def write_labels(path: Path, rows: Iterable[LabelRow]) -> None:
    """Write ``labels.csv`` atomically, sorted by plate, stack and z."""
    ordered = sorted(rows, key=lambda r: (r.plate, r.stack, r.z_index))
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(r.to_csv() for r in ordered)


# ----------------------------------------------------------------------------- best index

#: where a best index came from (:attr:`BestIndex.source`)
FROM_TRUTH, FROM_STACK_YAML, FROM_LABELS = "true_best_index", "best_index", LABELS_FILE


class BestIndex(NamedTuple):
    z_index: int
    source: str  # FROM_TRUTH, FROM_STACK_YAML or FROM_LABELS


def best_index(meta: Mapping, key: tuple[str, str] | None = None, rows: Iterable[LabelRow] = ()) -> BestIndex | None:
    """Return a stack's best-focus z index.

    ``stack.yaml``'s ``true_best_index`` (the simulator's truth), else its ``best_index`` (a hand label),
    else the ``best_index`` of the labels.csv ``rows`` of stack ``key``; None when none says.
    """
    for name in (FROM_TRUTH, FROM_STACK_YAML):
        if meta.get(name) is not None:
            return BestIndex(int(meta[name]), name)
    found = next((r.best_index for r in rows if r.key == key), None)
    return None if found is None else BestIndex(int(found), FROM_LABELS)


# ----------------------------------------------------------------------------- focus curve

def focus_curve_ambiguity(z_steps: np.ndarray, values: np.ndarray, holes: Iterable[int] = (),
                          dof_steps: float = DOF_STEPS) -> str | None:
    """Why a focus curve's maximum cannot be trusted, or None when it is a clear single peak.

    ``holes``: z indexes missing or skipped in the stack. Checks, in order: flat (range <=
    FLAT_SNR x noise, the noise from the MAD of second differences, or <= FLAT_REL x |max|); peak
    at either end; another interior local maximum >= dof_steps away, with prominence >=
    PEAK_PROMINENCE_FRAC x range and height >= SECOND_PEAK_FRAC x the highest (heights above the
    minimum); a hole next to the peak. A rise at an end of the curve is not counted as a second
    peak (it is typical of far defocus, where phase contrast grows).
    """
    z = np.asarray(z_steps)
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    best = int(np.argmax(v))
    span = float(v.max() - v.min())
    noise = 0.0
    if n >= 5:
        d2 = v[:-2] - 2 * v[1:-1] + v[2:]
        noise = 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6)
    if span <= max(FLAT_SNR * noise, FLAT_REL * float(np.abs(v).max())):
        return f"flat focus curve (range {span:.3g}, noise {noise:.3g})"
    if best in (0, n - 1):
        return f"focus peak at the end of the stack (z={z[best]})"
    lows = v - v.min()
    for i in range(1, n - 1):
        is_max = v[i] > v[i - 1] and v[i] >= v[i + 1]
        if (i != best and is_max and abs(int(z[i]) - int(z[best])) >= dof_steps
                and lows[i] >= SECOND_PEAK_FRAC * span
                and prominence(v, i) >= max(PEAK_PROMINENCE_FRAC * span, FLAT_SNR * noise)):
            return f"two focus peaks, z={z[best]} and z={z[i]} ({lows[i] / span:.0%} as high)"
    return hole_next_to(z, int(z[best]), holes)


def hole_next_to(z_steps: np.ndarray, best_z: int, holes: Iterable[int] = ()) -> str | None:
    """Why ``best_z`` cannot be trusted for a missing or skipped image next to it, or None."""
    z = np.asarray(z_steps)
    stride = int(np.min(np.diff(z))) if z.size > 1 else 1
    near = [h for h in holes if abs(h - best_z) <= stride]
    return f"missing image next to the focus peak (z={best_z}, missing {near})" if near else None
