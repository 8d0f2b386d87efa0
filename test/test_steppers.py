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

"""Stepper backends: simulated (fake clock), GPIO step/dir on gpiozero's MockFactory, GRBL over a pty."""
from __future__ import annotations

import math
import os
import re
import select
import sys
import threading
import time
import tty

import numpy as np
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from celegans_autofocus.hardware.steppers import MoveResult, SimulatedStepper, StepperError, make_stepper


class FakeClock:
    def __init__(self) -> None:
        self.t_s = 100.0

    def __call__(self) -> float:
        return self.t_s


# --- simulated -------------------------------------------------------------------------------
def test_simulated_moves_in_time_and_reports_duration():
    clock = FakeClock()
    s = SimulatedStepper(clock=clock, max_speed_steps_per_s=100.0)
    r = s.move_by(50)
    assert r == MoveResult(start_steps=0, target_steps=50, requested_steps=50, clamped=False, duration_s=0.5)
    assert s.moving and s.position_steps == 0
    clock.t_s += 0.25
    assert s.position_steps == 25
    with pytest.raises(StepperError, match="busy"):
        s.move_by(5)
    clock.t_s += 0.25
    assert not s.moving and s.position_steps == 50 and s.steps_travelled == 50
    assert s.estimate_duration_s(0) == pytest.approx(0.5)
    assert s.move_to(10, speed_steps_per_s=1e6).duration_s == pytest.approx(0.4)  # capped at max speed
    clock.t_s += 1
    assert s.move_by(np.int64(5)).target_steps == 15                    # numpy scalars are numbers too
    clock.t_s += 1
    assert s.move_to(np.float32(20.4)).target_steps == 20


def test_simulated_soft_limits_clamp_and_say_so():
    clock = FakeClock()
    s = SimulatedStepper(clock=clock, soft_min_steps=-100, soft_max_steps=100, max_speed_steps_per_s=1e4)
    r = s.move_to(250)
    assert r.clamped and r.target_steps == 100 and r.requested_steps == 250
    clock.t_s += 1
    assert s.position_steps == 100
    r = s.move_by(20)  # already at the limit: no motion at all
    assert r.clamped and r.target_steps == 100 and r.duration_s == 0 and not s.moving


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "12", None, True])
def test_non_finite_or_non_numeric_targets_never_move(bad):
    s = SimulatedStepper(clock=FakeClock())
    with pytest.raises(StepperError, match="not moving"):
        s.move_to(bad)
    with pytest.raises(StepperError, match="not moving"):
        s.move_by(bad)
    assert s.position_steps == 0 and not s.moving


def test_backlash_final_approach_from_one_side():
    clock = FakeClock()
    s = SimulatedStepper(clock=clock, backlash_steps=10, approach=1, max_speed_steps_per_s=100.0,
                         soft_min_steps=-35, soft_max_steps=100)
    assert s.plan(0, 20) == [20]                   # with the approach direction: direct
    assert s.plan(20, 0) == [-10, 0]               # against it: overshoot, come back up
    assert s.plan(0, -30) == [-35, -30]            # overshoot clipped at the soft limit
    assert s.plan(0, -35) == [-35]                 # target on the limit: nothing to overshoot
    r = s.move_to(-20)
    assert r.duration_s == pytest.approx(0.4)      # 30 down + 10 up at 100 steps/s
    clock.t_s += 0.3
    assert s.position_steps == -30
    clock.t_s += 0.1
    assert s.position_steps == -20 and s.steps_travelled == 40
    assert SimulatedStepper(backlash_steps=5, approach=-1).plan(0, 10) == [15, 10]


def test_disabled_and_faulted_steppers_refuse_and_recover():
    clock = FakeClock()
    s = SimulatedStepper(clock=clock, max_speed_steps_per_s=100.0)
    s.move_by(100)
    clock.t_s += 0.3
    s.enable(False)                                # stops where it is
    assert not s.moving and s.position_steps == 30
    with pytest.raises(StepperError, match="disabled"):
        s.move_by(1)
    with pytest.raises(StepperError, match="disabled"):
        s.home()
    s.enable(True)
    s.inject_fault("encoder lost")
    with pytest.raises(StepperError, match="encoder lost"):
        s.move_by(1)
    assert s.fault == "encoder lost" and s.position_steps == 30
    s.reconnect()
    assert s.fault is None
    s.move_by(-5)
    clock.t_s += 1
    assert s.position_steps == 25
    s.home()
    assert s.position_steps == 0


def test_bad_construction_values_are_named():
    with pytest.raises(ValueError, match="soft_min_steps"):
        SimulatedStepper(soft_min_steps=10, soft_max_steps=10)
    with pytest.raises(ValueError, match="max_speed_steps_per_s"):
        SimulatedStepper(max_speed_steps_per_s=0)
    with pytest.raises(ValueError, match="backlash_steps"):
        SimulatedStepper(backlash_steps=-1)
    with pytest.raises(ValueError, match="approach"):
        SimulatedStepper(approach=0)
    with pytest.raises(StepperError, match="speed_steps_per_s"):
        SimulatedStepper().move_by(1, speed_steps_per_s=-5)


def test_factory_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown stepper backend 'stepperoo'.*simulated, gpio, grbl"):
        make_stepper("stepperoo")
    with pytest.raises(ValueError, match="bad parameters for stepper backend 'simulated'.*wheels"):
        make_stepper("simulated", wheels=4)
    assert isinstance(make_stepper("simulated", position_steps=7), SimulatedStepper)
    for kind, module, package in (("gpio", "gpiozero", "gpiozero"), ("grbl", "serial", "pyserial")):
        monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed
        monkeypatch.delitem(sys.modules, f"celegans_autofocus.hardware.stepper_{kind}", raising=False)
        with pytest.raises(StepperError, match=f"pip install {package}"):
            make_stepper(kind)


# --- GPIO --------------------------------------------------------------------------------------
STEP, DIR, ENABLE, HOME, FAULT = 17, 27, 22, 23, 24


class StepPin(MockPin):
    """A step input as a driver chip sees it: at every rising edge it samples the DIR pin."""

    def __init__(self, factory, info, dir_pin):
        super().__init__(factory, info)
        self.dir_pin = dir_pin
        self.dir_at_steps: list[bool] = []

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed and value:
            self.dir_at_steps.append(self.dir_pin.state)
        return changed


@pytest.fixture
def pins():
    factory = MockFactory()
    Device.pin_factory = factory
    factory.pin(STEP, pin_class=StepPin, dir_pin=factory.pin(DIR))
    yield factory
    factory.reset()


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def make_gpio(**kw):
    from celegans_autofocus.hardware.stepper_gpio import GpioStepper
    return GpioStepper(step_pin=STEP, dir_pin=DIR, max_speed_steps_per_s=20000.0, **kw)


def test_gpio_pulse_count_and_direction(pins):
    s = make_gpio(enable_pin=ENABLE)
    assert pins.pin(ENABLE).state is False          # active-low enable: driven low = enabled
    r = s.move_by(37)
    assert r.duration_s == pytest.approx(37 / 20000.0)
    assert s.wait(5.0)
    assert s.position_steps == 37 and rising_edges(pins.pin(STEP)) == 37
    assert pins.pin(DIR).state is True
    s.move_by(-12)
    assert s.wait(5.0)
    assert s.position_steps == 25 and rising_edges(pins.pin(STEP)) == 49 and pins.pin(DIR).state is False
    assert pins.pin(STEP).dir_at_steps == [True] * 37 + [False] * 12
    s.enable(False)
    assert pins.pin(ENABLE).state is True           # driver released
    with pytest.raises(StepperError, match="disabled"):
        s.move_by(1)
    assert rising_edges(pins.pin(STEP)) == 49 == len(pins.pin(STEP).dir_at_steps)
    s.close()


def test_gpio_soft_limits_and_backlash(pins):
    s = make_gpio(soft_min_steps=-20, soft_max_steps=20, backlash_steps=4)
    r = s.move_to(100)
    assert r.clamped and r.target_steps == 20
    s.wait(5.0)
    assert s.position_steps == 20 and rising_edges(pins.pin(STEP)) == 20
    s.move_to(10)                                    # down 14, up 4
    s.wait(5.0)
    assert s.position_steps == 10 and rising_edges(pins.pin(STEP)) == 20 + 14 + 4
    assert pins.pin(STEP).dir_at_steps == [True] * 20 + [False] * 14 + [True] * 4
    s.close()


def test_gpio_disable_aborts_a_move(pins):
    from celegans_autofocus.hardware.stepper_gpio import GpioStepper
    s = GpioStepper(step_pin=STEP, dir_pin=DIR, max_speed_steps_per_s=500.0, soft_max_steps=5000)
    s.move_by(2000)                                  # 4 s at 500 steps/s
    time.sleep(0.1)
    s.enable(False)
    assert not s.moving
    moved = s.position_steps
    assert 0 < moved < 2000 and rising_edges(pins.pin(STEP)) == moved
    s.close()


def test_gpio_home_switch_and_driver_fault(pins):
    s = make_gpio(home_pin=HOME, fault_pin=FAULT, home_speed_steps_per_s=500.0, position_steps=500)
    step_pin, home_pin = pins.pin(STEP), pins.pin(HOME)

    def press_after(n_steps):
        while rising_edges(step_pin) < n_steps:
            time.sleep(0.0005)
        home_pin.drive_low()                         # switch to GND closes

    presser = threading.Thread(target=press_after, args=(30,))
    presser.start()
    s.home()
    presser.join()
    assert s.position_steps == 0 and 30 <= rising_edges(step_pin) < 80     # stops soon after the switch
    assert set(step_pin.dir_at_steps) == {False}                            # towards home_direction = -1

    pins.pin(FAULT).drive_low()                      # nFAULT asserted by the driver
    with pytest.raises(StepperError, match="nFAULT"):
        s.move_by(5)
    assert s.fault is not None
    with pytest.raises(StepperError, match="nFAULT"):
        s.home()
    pins.pin(FAULT).drive_high()
    s.reconnect()
    assert s.fault is None
    s.move_by(5)
    s.wait(5.0)
    assert s.position_steps == 5
    s.close()


def test_gpio_home_without_switch_zeroes_here_and_missing_switch_faults(pins):
    s = make_gpio(position_steps=42)
    s.home()
    assert s.position_steps == 0 and rising_edges(pins.pin(STEP)) == 0
    s.close()
    s = make_gpio(home_pin=HOME, home_max_steps=25)
    with pytest.raises(StepperError, match="home switch not reached within 25 steps"):
        s.home()
    assert s.fault is not None and rising_edges(pins.pin(STEP)) == 25
    s.close()


def test_gpio_bad_pin_is_reported(pins):
    with pytest.raises(StepperError, match="cannot open GPIO pins step=17 dir=17"):
        make_stepper("gpio", step_pin=STEP, dir_pin=STEP)


# --- GRBL over a pty ---------------------------------------------------------------------------
class FakeGrbl:
    """Answers like GRBL 1.1 on the master side of a pty: ok / error:N / ALARM:N / status reports.

    Moves take real time at the commanded feed, so Run/Idle states and feed hold are observable.
    """

    G1 = re.compile(r"^G91 G1 Z(-?\d+\.?\d*) F(\d+\.?\d*)$")

    def __init__(self, homing_enabled: bool = True, alarm: bool = False, z_mm: float = 0.0) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.name = os.ttyname(self.slave)
        self.homing_enabled, self.alarm = homing_enabled, alarm
        self.z_mm, self.leg = z_mm, None                 # leg: (t0, t1, z0, z1)
        self.hold = False
        self.lines: list[str] = []
        self.fail_next: int | None = None
        self.mute = False                                # True: reads but never answers (a hung controller)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def z_now(self) -> float:
        if self.leg is None:
            return self.z_mm
        t0, t1, z0, z1 = self.leg
        now = time.monotonic()
        if now >= t1:
            self.z_mm, self.leg = z1, None
            return z1
        return z0 + (z1 - z0) * (now - t0) / (t1 - t0)

    def state(self) -> str:
        self.z_now()  # ends a finished leg
        if self.alarm:
            return "Alarm"
        if self.hold:
            return "Hold:0"
        return "Run" if self.leg is not None else "Idle"

    def send(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\r\n")

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if self.fail_next is not None:
            code, self.fail_next = self.fail_next, None
            return self.send(f"error:{code}")
        if line == "$H":
            if not self.homing_enabled:
                return self.send("error:5")
            self.z_mm, self.leg, self.alarm = -1.0, None, False   # homed, after a 1 mm pull-off
            return self.send("ok")
        if line == "$X":
            self.alarm = False
            self.send("[MSG:Caution: Unlocked]")
            return self.send("ok")
        match = self.G1.match(line)
        if match is None:
            return self.send("error:20")
        if self.alarm:
            return self.send("error:9")
        z0, dz, feed = self.z_now(), float(match.group(1)), float(match.group(2))
        now = time.monotonic()
        self.leg = (now, now + abs(dz) / (feed / 60.0), z0, z0 + dz)
        self.send("ok")

    def _realtime(self, byte: bytes) -> None:
        if byte == b"?":
            self.send(f"<{self.state()}|MPos:0.000,0.000,{self.z_now():.3f}|FS:0,0>")
        elif byte == b"!":
            self.z_mm, self.leg, self.hold = self.z_now(), None, True
        elif byte == b"\x18":
            self.hold = False
            self.send("")
            self.send("Grbl 1.1h ['$' for help]")

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.01)[0]:
                continue
            try:
                data = os.read(self.master, 1024)
            except OSError:
                return
            if self.mute:
                continue
            for i in range(len(data)):
                byte = data[i:i + 1]
                if byte in (b"?", b"!", b"\x18", b"~"):
                    self._realtime(byte)
                elif byte == b"\n":
                    self._line(buf.decode().strip())
                    buf = b""
                else:
                    buf += byte

    def alarm_now(self, code: int) -> None:
        self.alarm = True
        self.send(f"ALARM:{code}")

    def disappear(self) -> None:
        """Pull the USB cable: both ends of the pty go away."""
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


class GrblPort:
    """A stable path (like /dev/serial/by-id/...) to whichever FakeGrbl is plugged in."""

    def __init__(self, path) -> None:
        self.port = str(path)
        self._link = path
        self.fakes: list[FakeGrbl] = []

    def plug(self, **kw) -> FakeGrbl:
        fake = FakeGrbl(**kw)
        self.fakes.append(fake)
        self._link.unlink(missing_ok=True)
        self._link.symlink_to(fake.name)
        return fake

    def unplug(self, fake: FakeGrbl) -> None:
        fake.disappear()
        self._link.unlink()   # the by-id link goes with the device; a recycled pts number is never opened


@pytest.fixture
def grbl(tmp_path):
    port = GrblPort(tmp_path / "ttyGRBL")
    yield port
    for fake in port.fakes:
        if not fake._stop.is_set():
            fake.disappear()


def make_grbl(port, **kw):
    params = dict(startup_s=0.01, timeout_s=1.0, max_speed_steps_per_s=4000.0)
    return make_stepper("grbl", port=port, **{**params, **kw})


def test_grbl_moves_with_gcode_and_reads_position(grbl):
    fake = grbl.plug(homing_enabled=True)
    s = make_grbl(grbl.port, soft_min_steps=-400, soft_max_steps=400)
    assert s.fault is None and s.position_steps == 0 and s.state == "Idle"
    r = s.move_by(200)                                  # 200 steps * 5 um = 1 mm at 4000 steps/s = 0.05 s
    assert r.duration_s == pytest.approx(0.05)
    assert fake.lines[-1] == "G91 G1 Z1.00000 F1200.000"    # 4000 steps/s * 5 um = 20 mm/s
    assert s.wait(2.0) and s.position_steps == 200
    s.move_to(-1000)                                    # clamped at the soft limit
    assert fake.lines[-1] == "G91 G1 Z-3.00000 F1200.000"
    assert s.wait(2.0) and s.position_steps == -400
    s.home()                                            # $H; GRBL's MPos after homing becomes our 0
    assert fake.lines[-1] == "$H" and s.position_steps == 0 and fake.z_mm == -1.0
    s.close()


def test_grbl_error_and_alarm_replies(grbl):
    fake = grbl.plug()
    s = make_grbl(grbl.port)
    fake.fail_next = 2
    with pytest.raises(StepperError, match=r"GRBL refused 'G91 G1 Z0.05000 F1200.000': error:2 \(bad number"):
        s.move_by(10)
    assert s.fault is None and s.position_steps == 0
    fake.alarm_now(1)
    sent = len(fake.lines)
    with pytest.raises(StepperError, match="ALARM:1 .hard limit"):
        s.move_by(10)
    assert "ALARM:1" in s.fault and len(fake.lines) == sent    # nothing sent to the machine
    s.home()
    assert s.fault is None
    s.move_by(10)
    assert s.wait(2.0) and s.position_steps == 10
    s.close()


def test_grbl_starting_in_alarm_is_a_fault_until_homed(grbl):
    grbl.plug(alarm=True, z_mm=2.5)
    s = make_grbl(grbl.port)
    assert "ALARM" in s.fault
    with pytest.raises(StepperError, match="ALARM"):
        s.move_by(1)
    s.home()
    assert s.fault is None and s.position_steps == 0
    s.close()


def test_grbl_without_homing_unlocks_and_zeroes_here(grbl):
    fake = grbl.plug(homing_enabled=False, z_mm=0.5)
    s = make_grbl(grbl.port)
    assert s.position_steps == 100
    s.home()
    assert fake.lines[-2:] == ["$H", "$X"] and s.position_steps == 0
    s.move_by(-20)
    assert s.wait(2.0) and s.position_steps == -20 and fake.z_mm == pytest.approx(0.4)
    s.close()


def test_grbl_disable_mid_move_holds_and_resets(grbl):
    grbl.plug()
    s = make_grbl(grbl.port, soft_max_steps=100000)
    s.move_by(20000, speed_steps_per_s=2000.0)          # 10 s
    time.sleep(0.1)
    assert s.moving
    s.enable(False)
    assert not s.moving and s.state == "Idle"
    stopped = s.position_steps
    assert 0 < stopped < 20000
    time.sleep(0.05)
    assert s.position_steps == stopped
    s.close()


def test_grbl_port_disappears_fault_then_reconnect(grbl):
    fake = grbl.plug()
    s = make_grbl(grbl.port)
    s.move_by(40)
    assert s.wait(2.0) and s.position_steps == 40
    grbl.unplug(fake)
    with pytest.raises(StepperError, match="lost"):
        s.move_by(10)
    assert "lost" in s.fault and s.position_steps == 40   # last known position, no motion
    with pytest.raises(StepperError, match="fault"):
        s.move_by(10)
    with pytest.raises(StepperError, match="cannot open GRBL serial port"):
        s.reconnect()                                    # nothing behind the port yet
    assert s.fault is not None
    new = grbl.plug(z_mm=0.2)                                 # plugged back in
    s.reconnect()
    assert s.fault is None and s.position_steps == 40
    s.move_by(-10)
    assert s.wait(2.0) and s.position_steps == 30 and new.lines == ["G91 G1 Z-0.05000 F1200.000"]
    s.close()


def test_grbl_reconnect_to_a_reset_controller_is_a_fault_until_homed(grbl):
    fake = grbl.plug(homing_enabled=False)
    s = make_grbl(grbl.port)
    s.move_by(30)
    assert s.wait(2.0) and s.position_steps == 30
    grbl.unplug(fake)
    grbl.plug(homing_enabled=False, z_mm=0.0)           # came back after a reset: MPos is 0 again
    s.reconnect()
    assert "position changed across the reconnect (30 -> 0 steps" in s.fault
    with pytest.raises(StepperError, match="position changed"):
        s.move_by(5)
    s.home()
    assert s.fault is None and s.position_steps == 0
    s.close()


def test_grbl_that_stops_answering_is_a_fault(grbl):
    fake = grbl.plug()
    s = make_grbl(grbl.port, timeout_s=0.2)
    fake.mute = True
    with pytest.raises(StepperError, match="no reply from GRBL"):
        s.move_by(10)
    assert "no reply" in s.fault and not any(line.startswith("G91") for line in fake.lines)
    fake.mute = False
    s.reconnect()
    assert s.fault is None
    s.move_by(10)
    assert s.wait(2.0) and s.position_steps == 10
    s.close()


def test_grbl_silent_device_is_reported(tmp_path):
    master, slave = os.openpty()                        # a port where nothing answers
    try:
        with pytest.raises(StepperError, match="no reply from GRBL"):
            make_stepper("grbl", port=os.ttyname(slave), startup_s=0.0, timeout_s=0.2)
    finally:
        os.close(master)
        os.close(slave)


def test_grbl_missing_port_is_named(tmp_path):
    with pytest.raises(StepperError, match=f"cannot open GRBL serial port {tmp_path}/nope"):
        make_grbl(str(tmp_path / "nope"))
