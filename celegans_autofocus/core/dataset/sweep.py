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

"""A stack recorded one z at a time (``acquire``, ``bag-to-dataset``): every image kept as it comes, resumable.

Unlike :class:`.writer.StackWriter` (whole or nothing), each image is written atomically straight into the
stack directory and ``stack.yaml`` is rewritten atomically after it, so an interrupted sweep keeps every image
it took, and a later run (``resume``) takes only the missing ones. ``stack.yaml`` holds::

    step_um, plate, stack, acquired_by, started, resumed (times), finished (once complete), complete
    sweep: {first_steps, last_steps, step_steps, settle_s, ...}    the plan (z: motor positions)
    camera: {...}, stepper: {...}                                  settings as found when it started
    positions: {<z>: {motor_steps, stamp_s, time, ...}}            one record per image taken

The z index is the absolute motor position in steps. An image on disk without a record in ``positions``
(a crash between the two writes) is not counted and is taken again.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import yaml

from ..acquisition import AcquireError, SweepPlan
from ..atomic import atomic_path, atomic_write_text
from .errors import StackError
from .io import IMAGE_SUFFIXES, image_suffix, write_image
from .layout import read_stack_yaml


def utc_now() -> str:
    """ISO 8601 UTC time to the millisecond (``2026-12-01T17:40:00.123Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SweepRecording:
    """One stack directory being filled by a sweep: :meth:`start`, then :meth:`add` per image, :meth:`finish`.

    ``meta``: the ``stack.yaml`` keys of a new recording (plan under ``sweep``); for a resumed one, its
    stored ``stack.yaml`` (``meta`` is ignored except for the sweep, which must match).
    """

    def __init__(self, path: Path, meta: dict, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        self.meta = dict(meta)
        self.existing = self.inspect(self.path, resume)
        if self.existing is not None:
            stored = SweepPlan.from_meta(self.existing["sweep"])
            asked = SweepPlan.from_meta(meta["sweep"]) if "sweep" in meta else stored
            if asked != stored:
                raise AcquireError(f"{self.path}: holds the sweep {stored.to_meta()}, not {asked.to_meta()}; "
                                   "resume it as it was planned or choose another stack name")
            self.meta = self.existing

    @staticmethod
    def inspect(path: Path, resume: bool) -> dict | None:
        """Check what is at ``path`` without writing: None for a new stack, the stored ``stack.yaml`` to resume.

        :class:`AcquireError` when the directory holds something that is not an unfinished sweep, a finished
        one, or an unfinished one without ``resume``.
        """
        path = Path(path)
        if not path.exists():
            if resume:
                raise AcquireError(f"{path}: nothing to resume (no such stack)")
            return None
        meta_path = path / "stack.yaml"
        if not meta_path.is_file():
            raise AcquireError(f"{path} exists and is not an acquired stack (no stack.yaml); choose another stack name")
        try:
            meta = read_stack_yaml(meta_path)
        except StackError as exc:
            raise AcquireError(str(exc)) from None
        if not isinstance(meta.get("sweep"), dict) or not isinstance(meta.get("positions", {}), dict):
            raise AcquireError(f"{path} holds a stack that was not recorded by a sweep; choose another stack name")
        taken = len(meta.get("positions") or {})
        total = len(SweepPlan.from_meta(meta["sweep"]).z_steps)
        if meta.get("complete"):
            raise AcquireError(f"{path} is a complete sweep ({taken} images); choose another stack name")
        if not resume:
            raise AcquireError(f"{path} holds an unfinished sweep ({taken} of {total} images); resume it "
                               "(--resume) or choose another stack name")
        return meta

    @property
    def plan(self) -> SweepPlan:
        return SweepPlan.from_meta(self.meta["sweep"])

    @property
    def positions(self) -> dict[int, dict]:
        return self.meta.setdefault("positions", {})

    def taken(self) -> set[int]:
        """Return the z positions with a record and an image on disk."""
        return {z for z in self.positions if self._files(z)}

    def missing(self) -> list[int]:
        """Planned z positions not taken yet, in sweep order."""
        taken = self.taken()
        return [z for z in self.plan.z_steps if z not in taken]

    def _files(self, z: int) -> list[Path]:
        return [p for p in (self.path / f"z_{z}{s}" for s in IMAGE_SUFFIXES) if p.is_file()]

    def start(self) -> None:
        """Create the directory and write ``stack.yaml`` (new), or drop a killed run's temporary files (resume)."""
        if self.existing is None:
            self.path.mkdir(parents=True)
            self.meta.update(started=utc_now(), complete=False, positions={})
        else:
            for tmp in [*self.path.glob(".z_*"), *self.path.glob(".stack.yaml.*")]:  # atomic_path's
                tmp.unlink(missing_ok=True)
            self.meta.setdefault("resumed", []).append(utc_now())
            for z in set(self.positions) - self.taken():  # a record whose image is gone: take it again
                del self.positions[z]
        self._save()

    def add(self, z: int, gray: np.ndarray, record: dict) -> Path:
        """Write the image of position ``z`` (atomically, replacing an unrecorded one) and record it."""
        suffix = image_suffix(gray)
        target = self.path / f"z_{int(z)}{suffix}"
        for other in self._files(z):
            if other != target:
                other.unlink()
        with atomic_path(target, suffix=suffix) as tmp:
            write_image(tmp, np.ascontiguousarray(gray))
        self.positions[int(z)] = dict(record)
        self._save()
        return target

    def finish(self) -> None:
        """Mark the sweep complete when every planned position is taken (else it stays resumable)."""
        if not self.missing():
            self.meta.update(complete=True, finished=utc_now())
            self._save()

    def _save(self) -> None:
        self.meta["positions"] = dict(sorted(self.positions.items()))
        atomic_write_text(self.path / "stack.yaml", yaml.safe_dump(self.meta, sort_keys=False))
