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

"""The focus stepper interface every backend implements (:class:`Stepper`), its errors and move results.

:class:`Stepper` is what nodes use: ``position_steps``, ``enabled``, ``fault``, ``moving``,
``move_to``/``move_by`` (non-blocking: they start the move and return a :class:`MoveResult`
with its estimated duration), ``wait``, ``home``, ``enable``, ``reconnect``, ``close``.
The driver itself enforces the soft limits (targets are clamped into them and the result says
so), refuses to move when disabled, faulted, busy or given a non-finite target, and
compensates backlash by always making the final approach from one side (``approach``).
"""
from __future__ import annotations

import math
import numbers
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass


def _is_number(value) -> bool:
    """Tell whether ``value`` is a finite real number (numpy scalars included, bool excluded)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class StepperError(RuntimeError):
    """A command the stepper refuses (disabled, fault, busy, bad value) or a backend that cannot start."""


@dataclass(frozen=True)
class MoveResult:
    """What a move command did. ``duration_s`` is the estimated time until the motor is still."""

    start_steps: int
    target_steps: int       # where the motor will stop (inside the soft limits)
    requested_steps: int    # the target that was asked for
    clamped: bool           # the soft limits shortened the move
    duration_s: float


class Stepper(ABC):
    """A focus motor counted in steps. Subclasses implement the ``_``-prefixed hooks."""

    def __init__(self, soft_min_steps: int = -1000, soft_max_steps: int = 1000,
                 max_speed_steps_per_s: float = 2000.0, backlash_steps: int = 0, approach: int = 1,
                 enabled: bool = True) -> None:
        if not soft_min_steps < soft_max_steps:
            raise ValueError(f"soft_min_steps ({soft_min_steps}) must be < soft_max_steps ({soft_max_steps})")
        if not (math.isfinite(max_speed_steps_per_s) and max_speed_steps_per_s > 0):
            raise ValueError(f"max_speed_steps_per_s must be > 0, got {max_speed_steps_per_s}")
        if int(backlash_steps) != backlash_steps or backlash_steps < 0:
            raise ValueError(f"backlash_steps must be an integer >= 0, got {backlash_steps}")
        if approach not in (1, -1):
            raise ValueError(f"approach must be +1 or -1 (final approach direction), got {approach}")
        self.soft_min_steps = int(soft_min_steps)
        self.soft_max_steps = int(soft_max_steps)
        self.max_speed_steps_per_s = float(max_speed_steps_per_s)
        self.backlash_steps = int(backlash_steps)
        self.approach = approach
        self._enabled = bool(enabled)
        self._fault: str | None = None
        self._lock = threading.RLock()

    # --- state -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def position_steps(self) -> int:
        """Return the current motor position in steps (live during a move)."""

    @property
    @abstractmethod
    def moving(self) -> bool:
        """Return True while a move is in progress."""

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def fault(self) -> str | None:
        """None when healthy, else why the stepper refuses to move (cleared by home/reconnect)."""
        return self._fault

    # --- commands ----------------------------------------------------------------------------
    def clamp(self, target_steps: int) -> int:
        return min(max(int(target_steps), self.soft_min_steps), self.soft_max_steps)

    def plan(self, start_steps: int, target_steps: int) -> list[int]:
        """Waypoints from ``start_steps`` to ``target_steps`` (excluded start) with backlash compensation.

        A move against the approach direction overshoots by ``backlash_steps`` (within the soft limits) and
        comes back, so the motor always arrives moving in the ``approach`` direction.
        """
        if target_steps == start_steps:
            return []
        if self.backlash_steps and (target_steps - start_steps) * self.approach < 0:
            over = self.clamp(target_steps - self.approach * self.backlash_steps)
            if over != target_steps:
                return [over, target_steps]
        return [target_steps]

    def estimate_duration_s(self, target_steps: int, speed_steps_per_s: float | None = None) -> float:
        """Time a move from the current position to ``target_steps`` (clamped) would take."""
        speed = self._speed(speed_steps_per_s)
        position = self.position_steps
        points = [position] + self.plan(position, self.clamp(target_steps))
        return sum(abs(b - a) for a, b in zip(points, points[1:])) / speed

    def _speed(self, speed_steps_per_s: float | None) -> float:
        if speed_steps_per_s is None:
            return self.max_speed_steps_per_s
        if not (_is_number(speed_steps_per_s) and speed_steps_per_s > 0):
            raise StepperError(f"speed_steps_per_s must be a finite number > 0, got {speed_steps_per_s!r}")
        return min(float(speed_steps_per_s), self.max_speed_steps_per_s)

    def _check_ready(self) -> None:
        fault = self.fault
        if fault is not None:
            raise StepperError(f"stepper fault, not moving: {fault}")
        if not self._enabled:
            raise StepperError("stepper is disabled, not moving")
        if self.moving:
            raise StepperError("stepper is busy with a move, not starting another")

    def move_to(self, target_steps: float, speed_steps_per_s: float | None = None) -> MoveResult:
        """Start a move to ``target_steps`` (clamped into the soft limits); returns at once."""
        if not _is_number(target_steps):
            raise StepperError(f"target_steps must be a finite number, got {target_steps!r}; not moving")
        with self._lock:
            self._check_ready()
            speed = self._speed(speed_steps_per_s)
            requested = int(round(target_steps))
            target = self.clamp(requested)
            start = self.position_steps
            waypoints = self.plan(start, target)
            points = [start] + waypoints
            duration = sum(abs(b - a) for a, b in zip(points, points[1:])) / speed
            if waypoints:
                self._start_move(waypoints, speed)
            return MoveResult(start, target, requested, target != requested, duration)

    def move_by(self, delta_steps: float, speed_steps_per_s: float | None = None) -> MoveResult:
        """Start a relative move (see :meth:`move_to`)."""
        if not _is_number(delta_steps):
            raise StepperError(f"delta_steps must be a finite number, got {delta_steps!r}; not moving")
        return self.move_to(self.position_steps + delta_steps, speed_steps_per_s)

    def enable(self, on: bool) -> None:
        """Energize (True) or release (False) the motor; disabling stops a move where it is."""
        with self._lock:
            self._set_enabled(bool(on))
            self._enabled = bool(on)

    def reconnect(self) -> None:
        """Re-establish the backend; the fault clears unless the backend still reports one.

        Raises :class:`StepperError` (and keeps a fault) if it cannot.
        """
        with self._lock:
            try:
                self._fault = self._reconnect()
            except StepperError as exc:
                self._fault = str(exc)
                raise

    def __enter__(self) -> "Stepper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- backend hooks -----------------------------------------------------------------------
    @abstractmethod
    def _start_move(self, waypoints: list[int], speed_steps_per_s: float) -> None:
        """Begin moving through ``waypoints`` (absolute steps) at ``speed_steps_per_s``; do not block."""

    @abstractmethod
    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the move ends; False if still moving after ``timeout_s``."""

    @abstractmethod
    def home(self) -> None:
        """Find the reference and set position 0 there (blocking); clears a fault on success."""

    @abstractmethod
    def _set_enabled(self, on: bool) -> None:
        """Apply enable/disable to the hardware."""

    def _reconnect(self) -> str | None:
        """Backend re-initialisation for :meth:`reconnect`; returns the remaining fault or None."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Stop and release the hardware."""
