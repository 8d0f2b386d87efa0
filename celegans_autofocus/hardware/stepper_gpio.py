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

"""Step/dir stepper driver (A4988, DRV8825, TMC2208 in step/dir mode) on GPIO pins with gpiozero.

Pulses come from a Python thread timed with ``time.perf_counter``, which is good for a few
kHz on a Raspberry Pi; use the GRBL backend for faster or smoother motion. Pin numbers follow
gpiozero (BCM numbers or names such as ``"GPIO17"``); tests use gpiozero's ``MockFactory``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from .stepper_base import Stepper, StepperError


def _wait_until(deadline_s: float) -> None:
    """Sleep most of the way to ``deadline_s`` (perf_counter), then spin for precision."""
    while True:
        remaining = deadline_s - time.perf_counter()
        if remaining <= 0:
            return
        if remaining > 2e-4:
            time.sleep(remaining - 1e-4)


class GpioStepper(Stepper):
    """A stepper on a step/dir driver.

    ``enable_pin`` (optional) drives the driver's enable input, active low by default (A4988 /EN).
    ``home_pin`` (optional) is a reference switch to GND (active low, internal pull-up): ``home()``
    runs towards ``home_direction`` until it closes and calls that position 0; without a switch
    ``home()`` makes the current position 0. ``fault_pin`` (optional) is the driver's active-low
    nFAULT output; while it is active the stepper is in fault and will not move.
    """

    def __init__(self, step_pin: int | str, dir_pin: int | str, enable_pin: int | str | None = None,
                 home_pin: int | str | None = None, fault_pin: int | str | None = None,
                 enable_active_high: bool = False, dir_high_is_positive: bool = True, home_direction: int = -1,
                 home_speed_steps_per_s: float = 500.0, home_max_steps: int = 100_000, pulse_s: float = 5e-6,
                 position_steps: int = 0, pin_factory=None, **limits) -> None:
        super().__init__(**limits)
        if home_direction not in (1, -1):
            raise ValueError(f"home_direction must be +1 or -1, got {home_direction}")
        if home_speed_steps_per_s <= 0 or home_max_steps < 1 or pulse_s < 0:
            raise ValueError("home_speed_steps_per_s and home_max_steps must be > 0, pulse_s >= 0; got "
                             f"{home_speed_steps_per_s}, {home_max_steps}, {pulse_s}")
        self.dir_high_is_positive = dir_high_is_positive
        self.home_direction = home_direction
        self.home_speed_steps_per_s = float(home_speed_steps_per_s)
        self.home_max_steps = int(home_max_steps)
        self.pulse_s = float(pulse_s)
        self._position = int(position_steps)
        self._devices: list = []
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps_travelled = 0
        try:
            self._step = self._add(DigitalOutputDevice(step_pin, initial_value=False, pin_factory=pin_factory))
            self._dir = self._add(DigitalOutputDevice(dir_pin, initial_value=False, pin_factory=pin_factory))
            self._enable_out = None if enable_pin is None else self._add(DigitalOutputDevice(
                enable_pin, active_high=enable_active_high, initial_value=self._enabled, pin_factory=pin_factory))
            self._home_in = None if home_pin is None else self._add(
                DigitalInputDevice(home_pin, pull_up=True, pin_factory=pin_factory))
            self._fault_in = None if fault_pin is None else self._add(
                DigitalInputDevice(fault_pin, pull_up=True, pin_factory=pin_factory))
        except Exception as exc:  # gpiozero raises many types (pin in use, no pin factory, bad name)
            self.close()
            raise StepperError(f"cannot open GPIO pins step={step_pin} dir={dir_pin} enable={enable_pin} "
                               f"home={home_pin} fault={fault_pin}: {exc}") from None

    def _add(self, device):
        self._devices.append(device)
        return device

    @property
    def position_steps(self) -> int:
        return self._position

    @property
    def moving(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def fault(self) -> str | None:
        if self._fault is None and self._fault_in is not None and self._fault_in.is_active:
            self._fault = "driver nFAULT pin is active (over-current, over-temperature or under-voltage)"
        return self._fault

    def _pulses(self, count: int, direction: int, speed_steps_per_s: float,
                stop_when: Callable[[], bool] | None = None) -> int:
        """Emit up to ``count`` step pulses towards ``direction``; returns how many were made."""
        self._dir.value = (direction > 0) == self.dir_high_is_positive
        period_s = 1.0 / speed_steps_per_s
        next_s = time.perf_counter() + 2e-6  # dir set-up time before the first edge
        for done in range(count):
            if self._abort.is_set() or (stop_when is not None and stop_when()):
                return done
            if self._fault_in is not None and self._fault_in.is_active:
                self._fault = "driver nFAULT pin went active during a move; stopped"
                return done
            _wait_until(next_s)
            self._step.on()
            _wait_until(time.perf_counter() + self.pulse_s)
            self._step.off()
            self._position += direction
            self.steps_travelled += 1
            next_s += period_s
        return count

    def _run(self, waypoints: list[int], speed_steps_per_s: float) -> None:
        for point in waypoints:
            delta = point - self._position
            if self._pulses(abs(delta), 1 if delta > 0 else -1, speed_steps_per_s) < abs(delta):
                return

    def _start_move(self, waypoints: list[int], speed_steps_per_s: float) -> None:
        self._abort.clear()
        self._thread = threading.Thread(target=self._run, args=(waypoints, speed_steps_per_s),
                                        name="gpio-stepper", daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        self._abort.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def wait(self, timeout_s: float | None = None) -> bool:
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return not self.moving

    def home(self) -> None:
        with self._lock:
            if self.moving:
                raise StepperError("stepper is busy with a move, cannot home")
            if not self._enabled:
                raise StepperError("stepper is disabled, cannot home")
            if self._fault_in is not None and self._fault_in.is_active:
                raise StepperError("driver nFAULT pin is active, cannot home")
            if self._home_in is not None and not self._home_in.is_active:
                self._abort.clear()
                self._pulses(self.home_max_steps, self.home_direction, self.home_speed_steps_per_s,
                             stop_when=lambda: self._home_in.is_active)
                if not self._home_in.is_active:
                    self._fault = f"home switch not reached within {self.home_max_steps} steps"
                    raise StepperError(self._fault)
            self._position = 0
            self._fault = None

    def _set_enabled(self, on: bool) -> None:
        if not on:
            self._halt()
        if self._enable_out is not None:
            self._enable_out.value = on

    def _reconnect(self) -> str | None:
        if self._fault_in is not None and self._fault_in.is_active:
            return "driver nFAULT pin is still active"
        return None

    def close(self) -> None:
        self._halt()
        for device in self._devices:
            device.close()
        self._devices = []
