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

"""The one-shot control law and the classical search autofocus, alone and driving a simulated stepper."""
from __future__ import annotations

import math

import numpy as np
import pytest

from celegans_autofocus.core.control import (MAX_OFFSET_STEPS, ControlConfig, Decision, FocusController, Reason,
                                             SearchAutofocus, SearchConfig)
from celegans_autofocus.hardware.steppers import SimulatedStepper


def settled(config: ControlConfig = ControlConfig()) -> FocusController:
    """Return a controller whose last move ended at t = 0 s."""
    c = FocusController(config)
    c.record_move(0.0)
    return c


# --- ControlConfig -----------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("gain", 0.0), ("gain", 2.5), ("gain", math.nan), ("deadband_steps", -1.0), ("max_move_steps", 0),
    ("max_move_steps", 10.5), ("median_window", 0), ("median_window", 2.5), ("act_now_steps", 4.0),
    ("stale_after_s", 0.0), ("settle_s", -0.1), ("soft_min_steps", 2000), ("gain", True), ("settle_s", math.inf),
])
def test_control_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field if field != "soft_min_steps" else "soft_min_steps"):
        ControlConfig(**{field: value})


def test_control_config_from_dict():
    cfg = ControlConfig.from_dict({"gain": 0.8, "median_window": 5})
    assert cfg.gain == 0.8 and cfg.median_window == 5 and ControlConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown ControlConfig keys \['gian'\]"):
        ControlConfig.from_dict({"gian": 1.0})


# --- FocusController -------------------------------------------------------------------------
def test_large_offset_moves_at_once_clamped_to_max_move():
    c = settled(ControlConfig(max_move_steps=120))
    d = c.update(150.0, stamp_s=1.0, now_s=1.01, position_steps=-150)
    assert d == Decision(120, Reason.MOVE, d.detail, median_steps=150.0, target_steps=-30, at_limit=False)
    d = settled().update(-150.4, 1.0, 1.01, 0)
    assert d.move_steps == -150 and d.reason is Reason.MOVE


def test_gain_scales_the_move():
    assert settled(ControlConfig(gain=0.5)).update(100.0, 1.0, 1.0, 0).move_steps == 50


def test_deadband_holds():
    c = settled()
    for offset in (8.0, -8.0, 3.0):
        d = c.update(offset, 1.0, 1.0, 0)
        assert d.move_steps == 0 and d.reason is Reason.IN_FOCUS


def test_small_offsets_wait_for_the_median_of_k():
    c = settled(ControlConfig(median_window=3))
    assert c.update(12.0, 1.0, 1.0, 0).reason is Reason.COLLECTING
    assert c.update(15.0, 1.1, 1.1, 0).reason is Reason.COLLECTING
    d = c.update(14.0, 1.2, 1.2, 0)
    assert d.reason is Reason.MOVE and d.move_steps == 14 and d.median_steps == 14.0


def test_median_outvotes_an_outlier():
    c = settled()
    assert c.update(12.0, 1.0, 1.0, 0).reason is Reason.COLLECTING
    assert c.update(300.0, 1.1, 1.1, 0).reason is Reason.COLLECTING   # disagrees with 12: no early action
    assert c.update(13.0, 1.2, 1.2, 0).move_steps == 13                # median of 12, 300, 13
    c = settled()
    for t, offset in ((1.0, 2.0), (1.1, -3.0), (1.2, 1.0)):
        c.update(offset, t, t, 0)
    d = c.update(-250.0, 1.3, 1.3, 0)                                  # full window [-3, 1, -250]
    assert d.move_steps == 0 and d.reason is Reason.IN_FOCUS


def test_predictions_during_a_move_are_ignored():
    c = settled()
    d = c.update(100.0, 1.0, 1.0, 0)
    assert d.moves
    d = c.update(90.0, 1.05, 1.1, 0)            # no record_move yet: the caller has not said when it ends
    assert d.reason is Reason.MOVING and not d.moves
    c.record_move(1.5)                          # lens still from 1.5 s; settle 0.05 s
    for stamp in (1.2, 1.5, 1.549):
        d = c.update(90.0, stamp, 1.6, 100)
        assert d.reason is Reason.UNSETTLED and not d.moves
    d = c.update(2.0, 1.55, 1.6, 100)
    assert d.reason is Reason.IN_FOCUS


def test_stale_predictions_hold_and_watchdog():
    cfg = ControlConfig(stale_after_s=0.5)
    c = FocusController(cfg)
    assert c.is_stale(0.0)                      # nothing fresh yet
    c.record_move(0.0)
    assert not c.is_stale(0.3) and c.is_stale(0.6)
    d = c.update(100.0, stamp_s=1.0, now_s=1.6, position_steps=0)
    assert d.reason is Reason.STALE and not d.moves
    d = c.update(100.0, stamp_s=2.0, now_s=1.0, position_steps=0)      # stamp from the future
    assert d.reason is Reason.STALE
    c.update(15.0, 2.0, 2.0, 0)
    assert not c.is_stale(2.4) and c.is_stale(2.6)
    d = c.update(15.0, 2.8, 2.8, 0)             # the 2.0 s prediction expired from the window
    assert d.reason is Reason.COLLECTING and "1/3" in d.detail
    assert c.counts["stale"] == 2


@pytest.mark.parametrize("offset, position", [(math.nan, 0), (math.inf, 0), (-math.inf, 0), (10.0, math.nan)])
def test_non_finite_inputs_hold_and_clear_the_window(offset, position):
    c = settled()
    c.update(12.0, 1.0, 1.0, 0)
    c.update(13.0, 1.1, 1.1, 0)
    d = c.update(offset, 1.2, 1.2, position)
    assert d.reason is Reason.NON_FINITE and not d.moves
    d = c.update(14.0, 1.3, 1.3, 0)
    assert d.reason is Reason.COLLECTING and "1/3" in d.detail   # the earlier 12, 13 were dropped
    assert c.update(20.0, math.nan, 1.4, 0).reason is Reason.NON_FINITE


@pytest.mark.parametrize("offset", [MAX_OFFSET_STEPS + 1.0, -1e12, 1.7e308])
def test_offsets_beyond_any_focus_travel_hold_and_clear_the_window(offset):
    c = settled()
    c.update(12.0, 1.0, 1.0, 0)
    c.update(13.0, 1.1, 1.1, 0)
    d = c.update(offset, 1.2, 1.2, 0)
    assert d.reason is Reason.IMPLAUSIBLE and not d.moves and "focus travel" in d.detail
    d = c.update(14.0, 1.3, 1.3, 0)
    assert d.reason is Reason.COLLECTING and "1/3" in d.detail   # the earlier 12, 13 were dropped
    d = settled().update(MAX_OFFSET_STEPS, 1.0, 1.0, 0)
    assert d.reason is Reason.MOVE and d.move_steps == ControlConfig().max_move_steps  # far but possible: acts


def test_soft_limits_clamp_and_report():
    c = settled(ControlConfig(soft_min_steps=-200, soft_max_steps=200))
    d = c.update(50.0, 1.0, 1.0, 190)
    assert d.move_steps == 10 and d.at_limit and d.target_steps == 200 and "soft limit" in d.detail
    c = settled(ControlConfig(soft_min_steps=-200, soft_max_steps=200))
    d = c.update(50.0, 1.0, 1.0, 200)
    assert d.reason is Reason.AT_LIMIT and not d.moves
    c.record_move(1.05)                         # a manual jog to 250, outside the limits: back inside only
    d = c.update(-30.0, 1.1, 1.1, 250)          # would go to 220
    assert d.move_steps == -50 and d.target_steps == 200 and d.at_limit


def test_window_restarts_after_each_move():
    """Only predictions from frames after the last move (+ settle) count: the median starts afresh."""
    c = settled()
    for t, offset in ((1.0, 12.0), (1.1, 15.0)):
        c.update(offset, t, t, 0)
    d = c.update(14.0, 1.2, 1.2, 0)
    assert d.move_steps == 14
    c.record_move(1.25)
    d = c.update(20.0, 1.3, 1.3, 14)
    assert d.reason is Reason.COLLECTING and "1/3" in d.detail
    c.update(-20.0, 1.4, 1.4, 14)
    d = c.update(-18.0, 1.5, 1.5, 14)            # median of 20, -20, -18: the pre-move 12, 15, 14 are gone
    assert d.move_steps == -18


def test_disable_and_enable():
    c = settled()
    c.enable(False)
    assert c.update(150.0, 1.0, 1.0, 0).reason is Reason.DISABLED and not c.enabled
    c.enable(True)
    assert c.update(150.0, 1.0, 1.0, 0).move_steps == 150


def test_record_move_rejects_non_finite():
    with pytest.raises(ValueError, match="end_s"):
        FocusController().record_move(math.nan)


@pytest.mark.parametrize("drift_steps_per_s, deadband_steps", [(5.0, 8.0), (20.0, 4.0)])
def test_closed_loop_with_simulated_stepper_tracks_drift(drift_steps_per_s, deadband_steps):
    """Noisy one-shot predictions (sigma 3 steps) at 15 fps, the best plane drifting.

    Focus within 2 frames from 150 steps, then >= 90 % of frames within the 8-step in-focus criterion. Fast drift
    needs a deadband below that criterion, so that the law corrects before focus is lost.
    """
    rng = np.random.default_rng(0)
    clock = [0.0]
    stepper = SimulatedStepper(clock=lambda: clock[0], max_speed_steps_per_s=3000.0, soft_min_steps=-400,
                               soft_max_steps=400)
    ctrl = FocusController(ControlConfig(deadband_steps=deadband_steps, soft_min_steps=-400, soft_max_steps=400))
    best = lambda t: 150.0 + drift_steps_per_s * t                      # noqa: E731
    errors, first_in_focus = [], None
    for frame in range(150):
        clock[0] = t = frame / 15.0
        z = stepper.position_steps
        error = best(t) - z
        errors.append(error)
        if first_in_focus is None and abs(error) <= 8:
            first_in_focus = frame
        prediction = error + rng.normal(0.0, 3.0)
        clock[0] = t + 0.03                                             # inference latency
        d = ctrl.update(prediction, stamp_s=t, now_s=clock[0], position_steps=stepper.position_steps)
        if d.moves:
            result = stepper.move_by(d.move_steps)
            ctrl.record_move(clock[0] + result.duration_s)
    assert first_in_focus is not None and first_in_focus <= 2
    assert np.mean(np.abs(errors[first_in_focus:]) <= 8) >= 0.9
    assert ctrl.counts["move"] >= drift_steps_per_s * 10 / 8 / 2       # it did follow the drift


# --- SearchAutofocus ---------------------------------------------------------------------------
def curve(best: float, width: float = 12.0):
    return lambda z: 1.0 / (1.0 + ((z - best) / width) ** 2) + 0.05


def run_search(search: SearchAutofocus, measure, z0: int, max_frames: int = 200) -> tuple[int, int]:
    """Drive the search frame by frame at rest; returns (final z, frames until the first CONVERGED)."""
    z = z0
    for frame in range(max_frames):
        d = search.update(z, measure(z), frame * 0.1)
        if d.reason is Reason.CONVERGED:
            return z, frame
        z += d.move_steps
    raise AssertionError("search did not converge")


@pytest.mark.parametrize("best", [-173.0, -40.3, 0.0, 12.6, 150.0, 198.0])
def test_search_finds_the_peak_within_its_frame_budget(best):
    cfg = SearchConfig()
    search = SearchAutofocus(cfg)
    assert not search.converged
    z, frames = run_search(search, curve(best), 0)
    assert search.converged and search.frames_searching == frames
    assert abs(z - best) <= cfg.tolerance_steps
    assert frames <= cfg.frames_per_search() and search.searches == 1
    assert frames >= 17                          # the coarse sweep alone is 17 frames


@pytest.mark.parametrize("toward", [0.0, 120.0, -120.0, math.nan])
def test_a_hint_picks_the_end_the_sweep_starts_at_and_changes_nothing_else(toward):
    search = SearchAutofocus()
    search.restart(toward_steps=toward)
    d = search.update(0, curve(150.0)(0), 0.0)
    assert d.target_steps == (200 if toward > 0 else -200)  # a non-finite hint is no hint: the low end
    search.restart(toward_steps=toward)
    z, frames = run_search(search, curve(150.0), 0)
    assert abs(z - 150) <= SearchConfig().tolerance_steps and frames <= SearchConfig().frames_per_search()
    search.restart()                                          # a hint is for one search
    assert search.update(0, 0.1, 9.0).target_steps == -200


def test_search_frame_budget_formula():
    assert SearchConfig().frames_per_search() == 27
    # 11 coarse; bracket 20 -> 2 steps needs ceil(log(10) / log(1.618)) = 5 golden steps after the first 2
    assert SearchConfig(range_steps=100, coarse_step_steps=10).frames_per_search() == 11 + 2 + 5 + 1


def test_search_ignores_frames_off_target_and_non_finite_measures():
    search = SearchAutofocus()
    d = search.update(0, 1.0, 0.0)
    assert d.reason is Reason.SEARCHING and d.target_steps == -200 and d.move_steps == -200
    d = search.update(-50, 5.0, 0.1)            # mid-move frame: not counted
    assert d.reason is Reason.NOT_AT_TARGET and d.move_steps == -150
    d = search.update(-200, math.nan, 0.2)
    assert d.reason is Reason.NON_FINITE and d.move_steps == 0
    d = search.update(-200, 0.5, 0.3)
    assert d.reason is Reason.SEARCHING and d.target_steps == -175
    assert [z for _, z, _ in search.history] == [0, -200]


def test_search_refocuses_after_a_drop_and_one_shot_does_not():
    search = SearchAutofocus(SearchConfig(refocus_drop=0.6, refocus_range_steps=100))
    z, _ = run_search(search, curve(30.0), 0)
    assert search.update(z, curve(30.0)(z), 10.0).reason is Reason.CONVERGED
    moved = curve(90.0)                          # the worm moved: focus 60 steps away
    d = search.update(z, moved(z), 11.0)
    assert d.reason is Reason.SEARCHING and search.searches == 2 and d.target_steps == z - 50
    z2, frames = run_search(search, moved, z + d.move_steps)
    assert abs(z2 - 90) <= 2 and frames <= SearchConfig().frames_per_search(100)
    # (the sweep covers [z-50, z+50]; the golden-section bracket reaches one coarse step beyond)
    one_shot = SearchAutofocus(SearchConfig(refocus_drop=0.0))
    z, _ = run_search(one_shot, curve(30.0), 0)
    assert one_shot.update(z, moved(z), 20.0).reason is Reason.CONVERGED and one_shot.searches == 1


def test_search_respects_soft_limits():
    cfg = SearchConfig(soft_min_steps=-50, soft_max_steps=300)
    search = SearchAutofocus(cfg)
    z, _ = run_search(search, curve(-45.0), 0)
    assert abs(z + 45) <= 2
    assert all(-50 <= hz <= 300 for _, hz, _ in search.history)


def test_search_disabled_and_config_errors():
    search = SearchAutofocus(enabled=False)
    assert search.update(0, 1.0, 0.0).reason is Reason.DISABLED
    search.enable(True)
    assert search.update(0, 1.0, 0.0).reason is Reason.SEARCHING
    assert search.update(math.nan, 1.0, 0.0).reason is Reason.NON_FINITE
    for kw, name in (({"coarse_step_steps": 500}, "coarse_step_steps"), ({"tolerance_steps": 0.5}, "tolerance"),
                     ({"refocus_drop": 1.0}, "refocus_drop"), ({"range_steps": 0}, "range_steps"),
                     ({"soft_min_steps": 5, "soft_max_steps": 5}, "soft_min_steps")):
        with pytest.raises(ValueError, match=name):
            SearchConfig(**kw)
