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

"""Focus stepper motors: the simulated backend and :func:`make_stepper`, which builds any backend by name.

The interface is :class:`.stepper_base.Stepper`. Backends: :class:`SimulatedStepper` (here),
``GpioStepper`` (step/dir/enable pins with gpiozero, ``stepper_gpio.py``) and ``GrblStepper`` (GRBL
G-code over pyserial, ``stepper_grbl.py``), imported only when chosen.
"""
from __future__ import annotations

import time
from typing import Callable

from .stepper_base import MoveResult, Stepper, StepperError

__all__ = ["BACKENDS", "MoveResult", "SimulatedStepper", "Stepper", "StepperError", "make_stepper"]


class SimulatedStepper(Stepper):
    """A deterministic, time-based motor: constant speed along the planned waypoints, no hardware.

    ``clock`` (seconds) defaults to ``time.monotonic``; pass a function of a simulated clock to
    drive it deterministically. ``home()`` is instantaneous and sets the position to 0.
    ``inject_fault(msg)`` puts it in a fault state, as a lost connection would.
    """

    def __init__(self, position_steps: int = 0, clock: Callable[[], float] = time.monotonic, **limits) -> None:
        super().__init__(**limits)
        self._clock = clock
        self._legs: list[tuple[float, float, int, int]] = []  # (t0_s, t1_s, from_steps, to_steps)
        self._rest_steps = int(position_steps)
        self._travelled_done = 0

    def _position_at(self, now_s: float) -> int:
        for t0, t1, a, b in self._legs:
            if now_s < t1:
                if now_s <= t0:
                    return a
                done = int(abs(b - a) * (now_s - t0) / (t1 - t0) + 1e-9)  # whole steps made so far
                return a + done if b > a else a - done
        return self._rest_steps

    def _travelled_in_legs(self, now_s: float) -> int:
        position = self._position_at(now_s)
        total = 0
        for t0, t1, a, b in self._legs:
            if now_s < t1:
                return total + abs(position - a)
            total += abs(b - a)
        return total

    @property
    def position_steps(self) -> int:
        return self._position_at(self._clock())

    @property
    def steps_travelled(self) -> int:
        """Total steps moved so far (both directions count), including the backlash legs."""
        return self._travelled_done + self._travelled_in_legs(self._clock())

    @property
    def moving(self) -> bool:
        return bool(self._legs) and self._clock() < self._legs[-1][1]

    def _settle_legs(self) -> int:
        """Stop where the motor is now: fold the legs into the travelled count; returns the position."""
        t = self._clock()
        position = self._position_at(t)
        self._travelled_done += self._travelled_in_legs(t)
        self._legs = []
        self._rest_steps = position
        return position

    def _start_move(self, waypoints: list[int], speed_steps_per_s: float) -> None:
        position = self._settle_legs()
        t = self._clock()
        for point in waypoints:
            duration = abs(point - position) / speed_steps_per_s
            self._legs.append((t, t + duration, position, point))
            t, position = t + duration, point
        self._rest_steps = position

    def wait(self, timeout_s: float | None = None) -> bool:
        if not self.moving:
            return True
        if self._clock is not time.monotonic:
            return False  # a simulated clock cannot be waited for: advance it instead
        remaining = self._legs[-1][1] - time.monotonic()
        if timeout_s is not None and timeout_s < remaining:
            time.sleep(max(timeout_s, 0.0))
            return not self.moving
        time.sleep(max(remaining, 0.0))
        return True

    def home(self) -> None:
        with self._lock:
            if not self._enabled:
                raise StepperError("stepper is disabled, cannot home")
            self._settle_legs()
            self._rest_steps = 0
            self._fault = None

    def inject_fault(self, message: str) -> None:
        """Simulate a hardware fault: the motor stops where it is and refuses to move."""
        with self._lock:
            self._settle_legs()
            self._fault = message

    def _set_enabled(self, on: bool) -> None:
        if not on:
            self._settle_legs()

    def close(self) -> None:
        self._settle_legs()


BACKENDS = ("simulated", "gpio", "grbl")


def make_stepper(kind: str, **params) -> Stepper:
    """Build a stepper backend by name: ``simulated``, ``gpio`` (needs gpiozero) or ``grbl`` (needs pyserial)."""
    if kind == "simulated":
        cls = SimulatedStepper
    elif kind == "gpio":
        try:
            from .stepper_gpio import GpioStepper as cls
        except ImportError as exc:
            raise StepperError(f"stepper backend 'gpio' needs gpiozero ({exc}); install it with: "
                               "pip install gpiozero  (or: pip install 'celegans_autofocus[hardware]')") from None
    elif kind == "grbl":
        try:
            from .stepper_grbl import GrblStepper as cls
        except ImportError as exc:
            raise StepperError(f"stepper backend 'grbl' needs pyserial ({exc}); install it with: "
                               "pip install pyserial  (or: pip install 'celegans_autofocus[hardware]')") from None
    else:
        raise ValueError(f"unknown stepper backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for stepper backend {kind!r}: {exc}") from None
