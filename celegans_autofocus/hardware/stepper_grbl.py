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

"""GRBL (1.1, also 0.9 status format) motion controller over a serial port with pyserial.

Moves are relative G-code, ``G91 G1 Z<mm> F<mm/min>`` with ``mm = steps * step_um / 1000``
(set GRBL's ``$102`` = 1000 / step_um steps/mm, 200 for the default 5 um steps). Position comes from the
``?`` status report (``<Idle|MPos:x,y,z|...>``). ``ok`` acknowledges a line, ``error:N`` refuses
it (raised as :class:`StepperError` with GRBL's meaning), ``ALARM:N`` puts the stepper in fault.
A serial port that fails, disappears or stops answering puts it in fault (no motion) until
:meth:`reconnect`.
``home()`` runs GRBL's homing cycle ``$H``; if homing is disabled in GRBL (``$22=0``, error:5) it
unlocks with ``$X`` and makes the current position 0 instead.
"""
from __future__ import annotations

import re
import time

import serial

from ..core.sensor import STEP_UM
from .stepper_base import Stepper, StepperError

GRBL_ERRORS = {
    1: "G-code words consist of a letter and a value", 2: "bad number format", 3: "invalid $ statement",
    5: "homing cycle is not enabled ($22)", 8: "command requires the Idle state", 9: "G-code locked out during "
    "alarm or jog ($X to unlock or $H to home)", 15: "jog target exceeds machine travel", 20: "unsupported "
    "G-code", 22: "feed rate not set", 24: "two G-code commands that both need axis words",
}
GRBL_ALARMS = {
    1: "hard limit triggered", 2: "soft limit: target beyond machine travel", 3: "reset while in motion",
    4: "probe fail", 5: "probe fail", 6: "homing fail: reset during homing", 7: "homing fail: door opened",
    8: "homing fail: could not clear the limit switch", 9: "homing fail: limit switch not found",
}
STATUS_RE = re.compile(r"^<([A-Za-z]+)(?::(\d+))?[|,](.*)>$")
MOVING_STATES = {"Run", "Jog", "Home", "Hold"}
SOFT_RESET = b"\x18"


class GrblStepper(Stepper):
    """One axis (``axis`` = X, Y or Z) of a GRBL controller, counted in steps of ``step_um``."""

    def __init__(self, port: str, baudrate: int = 115200, step_um: float = STEP_UM, axis: str = "Z",
                 timeout_s: float = 2.0, home_timeout_s: float = 60.0, startup_s: float = 2.0, **limits) -> None:
        super().__init__(**limits)
        if axis not in ("X", "Y", "Z"):
            raise ValueError(f"axis must be X, Y or Z, got {axis!r}")
        if step_um <= 0 or timeout_s <= 0 or home_timeout_s <= 0 or startup_s < 0:
            raise ValueError(f"step_um, timeout_s and home_timeout_s must be > 0; got {step_um}, {timeout_s}, "
                             f"{home_timeout_s}")
        self.port, self.baudrate, self.step_um, self.axis = port, baudrate, float(step_um), axis
        self.timeout_s, self.home_timeout_s, self.startup_s = timeout_s, home_timeout_s, startup_s
        self._serial: serial.Serial | None = None
        self._buffer = b""
        self._zero_mm = 0.0
        self._mpos_mm = 0.0
        self._state, self._substate = "Unknown", ""
        self._position = 0
        self._fault = self._connect()

    # --- link ----------------------------------------------------------------------------------
    def _connect(self) -> str | None:
        """Open the port and read GRBL's state; returns the fault to report or None.

        GRBL boots first (opening resets an Arduino), and its banner is dropped.
        """
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0.02, write_timeout=self.timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._serial = None
            raise StepperError(f"cannot open GRBL serial port {self.port}: {exc}") from None
        self._buffer = b""
        time.sleep(self.startup_s)
        try:
            self._serial.reset_input_buffer()
            self._status()
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None
        except StepperError:
            self.close()
            raise
        if self._state == "Alarm":
            return "GRBL is in ALARM state (position unknown): home it"
        return None

    def _lost(self, exc: Exception) -> StepperError:
        """Handle a failed port: close it, enter fault, and return the error to raise."""
        self._fault = f"serial port {self.port} lost: {exc}"
        self.close()
        return StepperError(f"stepper fault, not moving: {self._fault}")

    def _write(self, data: bytes) -> None:
        if self._serial is None:
            raise StepperError(f"stepper fault, not moving: {self._fault or 'serial port closed'}")
        try:
            self._serial.write(data)
            self._serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None

    def _readline(self, deadline_s: float) -> str:
        while b"\n" not in self._buffer:
            if self._serial is None:
                raise StepperError(f"stepper fault, not moving: {self._fault or 'serial port closed'}")
            if time.monotonic() > deadline_s:  # a late reply could still move the motor: stop trusting it
                self._fault = f"no reply from GRBL on {self.port} within the timeout: reconnect"
                raise StepperError(f"stepper fault, not moving: {self._fault}")
            try:
                chunk = self._serial.read(self._serial.in_waiting or 1)
            except (serial.SerialException, OSError) as exc:
                raise self._lost(exc) from None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("ascii", "replace").strip()

    def _handle_async(self, line: str) -> None:
        """Lines that may arrive at any time: alarms, resets, status reports."""
        if line.startswith("ALARM:"):
            code = int(line[6:]) if line[6:].isdigit() else -1
            self._fault = f"GRBL {line} ({GRBL_ALARMS.get(code, 'unknown alarm')}): home it"
        elif line.startswith("Grbl "):
            self._fault = "GRBL was reset (position may be lost): home it"
        elif STATUS_RE.match(line):
            self._parse_status(line)

    def _command(self, line: str, timeout_s: float | None = None) -> None:
        """Send one G-code/$ line and wait for ``ok``; ``error:N`` and alarms raise :class:`StepperError`."""
        self._write(line.encode("ascii") + b"\n")
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            reply = self._readline(deadline)
            if reply == "ok":
                return
            if reply.startswith("error:"):
                code = int(reply[6:]) if reply[6:].isdigit() else -1
                raise StepperError(f"GRBL refused {line!r}: {reply} ({GRBL_ERRORS.get(code, 'see GRBL docs')})")
            self._handle_async(reply)
            if reply.startswith("ALARM:"):
                raise StepperError(f"stepper fault, not moving: {self._fault}")

    def _parse_status(self, line: str) -> None:
        """``<State[:n]|MPos:x,y,z|...>`` (1.1) or ``<State,MPos:x,y,z,WPos:...>`` (0.9)."""
        match = STATUS_RE.match(line)
        fields = re.split(r"[|,]", match.group(3))
        for i, part in enumerate(fields):
            if part.startswith(("MPos:", "WPos:")):
                coords = [part[5:]] + fields[i + 1:i + 3]
                try:
                    self._mpos_mm = float(coords["XYZ".index(self.axis)])
                except (IndexError, ValueError):
                    raise StepperError(f"unreadable GRBL status report {line!r}") from None
                self._position = int(round((self._mpos_mm - self._zero_mm) * 1000.0 / self.step_um))
                break
        self._state, self._substate = match.group(1), match.group(2) or ""

    def _status(self) -> str:
        """Send ``?`` and read up to the status report; returns the state (Idle, Run, Alarm, ...)."""
        self._write(b"?")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._readline(deadline)
            if STATUS_RE.match(reply):
                self._parse_status(reply)
                return self._state
            self._handle_async(reply)

    def _poll(self) -> None:
        """Refresh position and state unless the link is down."""
        if self._serial is not None:
            with self._lock:
                self._status()

    # --- Stepper ---------------------------------------------------------------------------------
    @property
    def position_steps(self) -> int:
        """Position from a fresh ``?`` report (the last known one while the link is down)."""
        try:
            self._poll()
        except StepperError:
            pass
        return self._position

    @property
    def moving(self) -> bool:
        try:
            self._poll()
        except StepperError:
            return False
        return self._state in MOVING_STATES

    @property
    def state(self) -> str:
        """Return GRBL's machine state from the last status report."""
        return self._state

    def _start_move(self, waypoints: list[int], speed_steps_per_s: float) -> None:
        feed_mm_per_min = speed_steps_per_s * self.step_um / 1000.0 * 60.0
        position = self._position
        for point in waypoints:
            delta_mm = (point - position) * self.step_um / 1000.0
            self._command(f"G91 G1 {self.axis}{delta_mm:.5f} F{feed_mm_per_min:.3f}")
            position = point

    def wait(self, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.moving:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def home(self) -> None:
        with self._lock:
            if not self._enabled:
                raise StepperError("stepper is disabled, cannot home")
            if self._serial is None:
                raise StepperError(f"stepper fault, cannot home: {self._fault}")
            try:
                self._command("$H", timeout_s=self.home_timeout_s)
            except StepperError as exc:
                if "error:5" not in str(exc):
                    raise
                self._command("$X")  # no homing switches: unlock and call this position 0
            self._status()
            self._zero_mm = self._mpos_mm
            self._position = 0
            self._fault = None

    def _set_enabled(self, on: bool) -> None:
        """Enable or disable the motor; disabling during a move stops it.

        Feed hold (``!``) until GRBL reports ``Hold:0``, then a soft reset flushes the planner (GRBL keeps its
        position when reset from a completed hold).
        """
        if on or self._serial is None or not self.moving:
            return
        self._write(b"!")
        deadline = time.monotonic() + self.timeout_s
        while (self._status(), self._substate) != ("Hold", "0"):
            if time.monotonic() > deadline:
                raise StepperError("GRBL did not complete the feed hold in time")
            time.sleep(0.01)
        self._write(SOFT_RESET)
        deadline = time.monotonic() + self.timeout_s
        while not self._readline(deadline).startswith("Grbl "):
            pass
        self._status()

    def _reconnect(self) -> str | None:
        """Reopen the port.

        A position that differs from the last known one means GRBL was reset (opening the port resets an
        Arduino, and a reset zeroes MPos): fault until homed.
        """
        self.close()
        known = self._position
        fault = self._connect()
        if fault is None and self._position != known:
            fault = (f"position changed across the reconnect ({known} -> {self._position} steps; "
                     "GRBL was reset?): home it")
        return fault

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
        self._serial = None
