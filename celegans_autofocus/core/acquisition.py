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

"""Acquiring a z-stack: the sweep plan, its limit check, and which frame belongs to which lens position.

No ROS here: ``nodes/acquire_client.py`` applies it live, ``commands/bag_to_dataset.py`` to a recorded bag,
so both pick the same frames.

The one rule for a settled frame: the focus joint *rests* at a position from the first sample reporting it
(``start_ns``) to the last sample before it changes (``end_ns``). A frame shows that position when it is
stamped at least ``settle_s`` after the rest began and no later than a sample that still reports it. The
frame kept for a position is the first such frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

#: default wait after the lens reaches a position before a frame counts (mechanical settling + exposure)
DEFAULT_SETTLE_S = 0.1


class AcquireError(RuntimeError):
    """A sweep refused before it starts, or stopped; the message says why and what was kept."""


def _int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value or value < low:
        raise AcquireError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SweepPlan:
    """Motor positions ``first, first + step, ... last`` (steps), swept upwards."""

    first_steps: int
    last_steps: int
    step_steps: int

    def __post_init__(self) -> None:
        for name, low in (("first_steps", -2**62), ("last_steps", -2**62), ("step_steps", 1)):
            object.__setattr__(self, name, _int(name, getattr(self, name), low))
        if self.last_steps < self.first_steps or (self.last_steps - self.first_steps) % self.step_steps:
            raise AcquireError(f"a sweep from {self.first_steps} to {self.last_steps} steps cannot go in steps of "
                               f"{self.step_steps}")

    @classmethod
    def around(cls, centre_steps: int, range_steps: int, step_steps: int) -> "SweepPlan":
        """``centre - range`` up to ``centre + range`` (the last position that fits the step)."""
        range_steps, step_steps = _int("range_steps", range_steps, 0), _int("step_steps", step_steps, 1)
        first = _int("centre_steps", centre_steps, -2**62) - range_steps
        return cls(first, first + (2 * range_steps // step_steps) * step_steps, step_steps)

    @property
    def z_steps(self) -> list[int]:
        return list(range(self.first_steps, self.last_steps + 1, self.step_steps))

    def check_limits(self, soft_min_steps: int, soft_max_steps: int) -> None:
        """Refuse a sweep that would leave the stepper's soft limits (:class:`AcquireError` says by how much)."""
        low, high = self.first_steps, self.last_steps
        if low < soft_min_steps or high > soft_max_steps:
            beyond = max(soft_min_steps - low, high - soft_max_steps)
            raise AcquireError(f"sweep z {low}..{high} steps leaves the stepper's soft limits [{soft_min_steps}, "
                               f"{soft_max_steps}] by {beyond} steps; lower the range or move the lens first")

    def to_meta(self) -> dict:
        return {"first_steps": self.first_steps, "last_steps": self.last_steps, "step_steps": self.step_steps}

    @classmethod
    def from_meta(cls, meta: Mapping) -> "SweepPlan":
        try:
            return cls(meta["first_steps"], meta["last_steps"], meta["step_steps"])
        except (KeyError, TypeError) as exc:
            raise AcquireError(f"bad sweep record {dict(meta) if isinstance(meta, Mapping) else meta!r}: "
                               f"missing {exc}") from None


@dataclass
class Rest:
    """The focus joint at one position, from its first sample there to the latest (stamps in ns)."""

    position_steps: int
    start_ns: int
    end_ns: int

    def holds(self, frame_ns: int, settle_s: float) -> bool:
        """Whether a frame stamped ``frame_ns`` shows this position settled (the module's rule)."""
        return self.start_ns + int(round(settle_s * 1e9)) <= frame_ns <= self.end_ns


class RestTracker:
    """Folds focus-joint samples, in stamp order, into :class:`Rest` intervals; older samples are ignored."""

    def __init__(self) -> None:
        self.rests: list[Rest] = []

    @property
    def current(self) -> Rest | None:
        return self.rests[-1] if self.rests else None

    def add(self, stamp_ns: int, position_steps: float) -> bool:
        """Add one sample; False (ignored) when it is older than the last one or not finite."""
        if not math.isfinite(position_steps):
            return False
        position = int(round(position_steps))
        last = self.current
        if last is not None and stamp_ns < last.end_ns:
            return False
        if last is not None and last.position_steps == position:
            last.end_ns = stamp_ns
        else:
            self.rests.append(Rest(position, stamp_ns, stamp_ns))
        return True


def first_settled(rest: Rest, frame_stamps_ns: Iterable[int], settle_s: float) -> int | None:
    """Return the stamp of the first frame that shows ``rest`` settled, or None."""
    return min((t for t in frame_stamps_ns if rest.holds(t, settle_s)), default=None)


def sweep_positions(rests: list[Rest], frame_stamps_ns: list[int], settle_s: float) -> list[tuple[Rest, int]]:
    """Find the sweep in a recording: ``(rest, frame stamp)`` for each position of the sweep, in order.

    Rests that have a settled frame are candidates; the sweep is the longest run of consecutive candidates
    spaced by one constant non-zero stride (the first such run on a tie). This drops the rest before the
    sweep and the return to the start; a recording holds one sweep.
    """
    frames = sorted(frame_stamps_ns)
    found = [(r, t) for r in rests for t in [first_settled(r, frames, settle_s)] if t is not None]
    best: list[tuple[Rest, int]] = found[:1]
    run = found[:1]
    for item in found[1:]:
        stride = item[0].position_steps - run[-1][0].position_steps
        first_stride = run[1][0].position_steps - run[0][0].position_steps if len(run) > 1 else None
        if stride != 0 and (first_stride is None or stride == first_stride):
            run = run + [item]
        else:
            run = [run[-1], item] if stride != 0 else [item]
        if len(run) > len(best):
            best = run
    return best
