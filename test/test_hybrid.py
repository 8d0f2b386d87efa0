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

"""core/hybrid.py: every mode change of the hybrid autofocus, on synthetic measure curves and predictions.

Also core/best_plane.py: the best-plane Kalman filter.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from celegans_autofocus.core.best_plane import BestPlaneTracker
from celegans_autofocus.core.control import MAX_OFFSET_STEPS, SearchConfig
from celegans_autofocus.core.hybrid import HybridAutofocus, HybridConfig, HybridReason as R, Mode


def measure(error_steps: float) -> float:
    """Return a focus-measure curve shaped like detail_skewness on the simulator.

    A sharp peak at focus (1.5), negative shoulders at ~30 steps, a weaker side lobe at ~100 steps.
    """
    e = abs(error_steps)
    return 1.5 * math.exp(-e * e / 128.0) - 0.6 * math.exp(-(e - 35.0) ** 2 / 200.0) + 0.3 * math.exp(
        -(e - 100.0) ** 2 / 1800.0)


class Rig:
    """Drives a HybridAutofocus frame by frame: frames every ``dt_s``, moves done before the next frame."""

    def __init__(self, ctrl: HybridAutofocus, best=lambda t: 0.0, z0: int = 0, dt_s: float = 0.1) -> None:
        self.ctrl, self.best, self.z, self.dt_s, self.t_s = ctrl, best, z0, dt_s, 0.0
        self.decisions, self.lens = [], []

    def error(self) -> float:
        return self.best(self.t_s) - self.z

    def step(self, model, measure_fn=measure) -> None:
        err = self.error()
        pred = model(err, self.t_s)  # offset_steps, or (offset_steps, sigma_steps) for a model with sigma
        pred, sigma = pred if isinstance(pred, tuple) else (pred, None)
        d = self.ctrl.update(pred, sigma, measure_fn(err), self.t_s, self.t_s + 0.01, float(self.z))
        if d.moves:
            assert d.target_steps == self.z + d.move_steps
            self.z += d.move_steps
            self.ctrl.record_move(self.t_s + 0.02)
        self.decisions.append(d)
        self.lens.append(self.z)
        self.t_s += self.dt_s

    def run(self, model, n: int, measure_fn=measure) -> "Rig":
        for _ in range(n):
            self.step(model, measure_fn)
        return self

    def reasons(self) -> list[R]:
        return [c.reason for c in self.ctrl.changes]


def oracle(err, t):
    return err


def biased(err, t):
    return err + 9.0  # the bundled model's bias near focus, roughly


def constant(value):
    return lambda err, t: value


def test_jump_then_refine_then_track():
    rig = Rig(HybridAutofocus(HybridConfig(consistency_frames=2)), z0=0, best=lambda t: 150.0).run(biased, 30)
    d0, d1 = rig.decisions[:2]
    assert d0.reason == R.COLLECTING and not d0.moves                  # K = 2: one prediction is not enough
    assert d1.reason == R.JUMP and d1.move_steps == 159 and d1.mode == Mode.ACQUIRE
    assert rig.reasons() == [R.START, R.NEAR_FOCUS, R.FOCUSED]           # then the measure finishes
    changes = rig.ctrl.changes
    assert (changes[1].previous, changes[1].mode) == (Mode.ACQUIRE, Mode.REFINE)
    assert (changes[2].previous, changes[2].mode) == (Mode.REFINE, Mode.TRACK)
    assert abs(rig.error()) <= 1.0 and rig.ctrl.mode == Mode.TRACK and rig.ctrl.strikes == 0
    assert rig.decisions[-1].reason == R.IN_FOCUS and rig.decisions[-1].best_z_steps == pytest.approx(150, abs=2)
    focused = next(i for i, d in enumerate(rig.decisions) if d.change is not None and d.change.reason == R.FOCUSED)
    assert focused <= 12                                                # a few measure-guided frames
    assert not any(d.moves for d in rig.decisions[focused + 1:])        # a sharp worm is not disturbed


def test_one_frame_jump_with_k1_and_no_refine_moves_when_the_landing_is_sharp():
    rig = Rig(HybridAutofocus(), best=lambda t: -120.0).run(oracle, 12)  # default K = 1
    assert rig.decisions[0].reason == R.JUMP and rig.lens[0] == -120
    assert rig.reasons() == [R.START, R.NEAR_FOCUS, R.FOCUSED] and rig.error() == 0.0


def test_verify_undoes_a_jump_without_progress_and_a_refuted_plane_falls_back_to_search():
    cfg = HybridConfig(soft_min_steps=-400, soft_max_steps=400)
    rig = Rig(HybridAutofocus(cfg), best=lambda t: 60.0).run(constant(-140.0), 4)
    jump, undo, refuted = rig.decisions[0], rig.decisions[1], rig.decisions[2]
    assert jump.reason == R.JUMP and rig.lens[0] == -140
    assert undo.reason == R.UNDO and undo.target_steps == 0 and "verify_inconsistent" in undo.detail
    assert refuted.change is not None and refuted.change.reason == R.REFUTED and refuted.mode == Mode.SEARCH
    assert rig.reasons() == [R.START, R.REFUTED] and rig.ctrl.strikes == 2
    rig.run(constant(-140.0), 60)                                        # the search finds focus regardless
    assert abs(rig.error()) <= 4 and rig.reasons()[-2:] == [R.SEARCH_CONVERGED, R.FOCUSED]
    assert rig.ctrl.mode == Mode.TRACK and not rig.ctrl.cnn_trusted     # and the model is not trusted again
    assert min(rig.lens) >= -400 and max(rig.lens) <= 400


def test_verify_undoes_a_jump_that_makes_a_focused_image_clearly_worse():
    best = lambda t: 0.0 if t < 2.95 else 6.0  # noqa: E731 - a small step of the plane at 3 s
    model = lambda err, t: err if t < 2.85 else 120.0  # noqa: E731 - the model goes wrong, consistently
    rig = Rig(HybridAutofocus(HybridConfig(max_strikes=3)), best=best, z0=-50).run(model, 30)
    assert rig.ctrl.mode == Mode.TRACK and rig.lens[-1] == 0 and rig.decisions[-1].reason == R.IN_FOCUS
    rig.run(model, 6)
    undo = next(d for d in rig.decisions if d.reason == R.UNDO)
    assert "verify_worse" in undo.detail and undo.target_steps == 0
    assert rig.reasons()[3:] == [R.FAR_PREDICTION, R.REFUTED] and rig.ctrl.mode == Mode.SEARCH


def test_measure_drop_rerefines_and_drift_is_followed():
    rig = Rig(HybridAutofocus(), best=lambda t: 40.0 + 4.0 * t, z0=0).run(oracle, 120)
    reasons = rig.reasons()
    assert reasons[:3] == [R.START, R.NEAR_FOCUS, R.FOCUSED]
    assert R.MEASURE_DROP in reasons                                     # drift lowers the measure: re-refine
    assert any(d.reason == R.FOLLOW_DRIFT for d in rig.decisions)        # then the filter's rate is followed
    assert rig.ctrl.tracker.rate_steps_per_s == pytest.approx(4.0, abs=1.0)
    errors = [rig.best(i * 0.1) - z for i, z in enumerate(rig.lens)]
    assert np.mean(np.abs(errors[20:]) <= 8) >= 0.9


def test_fallback_on_oscillating_predictions_and_return_when_the_cnn_agrees():
    flip = {"n": 0}

    def oscillating_then_right(err, t):
        if t < 5.0:
            flip["n"] += 1
            return 100.0 if flip["n"] % 2 else -100.0
        return err

    rig = Rig(HybridAutofocus(HybridConfig(consistency_frames=2)), best=lambda t: 50.0).run(oscillating_then_right, 8)
    assert rig.reasons() == [R.START, R.OSCILLATING] and rig.ctrl.mode == Mode.SEARCH
    assert not any(d.moves for d in rig.decisions[:4])                  # nothing moved on the oscillation
    rig.run(oscillating_then_right, 80)
    assert rig.reasons()[-1] == R.CNN_AGREES and rig.ctrl.mode == Mode.TRACK
    assert rig.ctrl.strikes == 0 and abs(rig.error()) <= 4


def test_a_refine_without_a_peak_counts_against_the_model():
    # the model says 10 steps from focus wherever the lens is; the measure has no peak near there
    flat = lambda err: -0.5  # noqa: E731
    rig = Rig(HybridAutofocus(), best=lambda t: 200.0).run(constant(10.0), 10, measure_fn=flat)
    assert rig.reasons() == [R.START, R.NEAR_FOCUS, R.REFINE_FAILED, R.NEAR_FOCUS, R.REFINE_FAILED]
    assert [(c.previous, c.mode) for c in rig.ctrl.changes[2:]] == [
        (Mode.REFINE, Mode.ACQUIRE), (Mode.ACQUIRE, Mode.REFINE), (Mode.REFINE, Mode.SEARCH)]  # 2nd strike
    assert "strike 2/2 (refine_failed)" in rig.ctrl.changes[-1].detail


def test_cnn_far_while_the_measure_stays_sharp_is_disagreement():
    model = lambda err, t: err if t < 3.0 else 80.0  # noqa: E731
    rig = Rig(HybridAutofocus(), best=lambda t: 30.0).run(model, 30)
    assert rig.ctrl.mode == Mode.TRACK
    rig.run(model, 2 * HybridConfig().disagree_frames)
    assert rig.reasons()[-1] == R.DISAGREES and rig.ctrl.mode == Mode.SEARCH
    assert not any(d.moves for d in rig.decisions[30:-1])               # the sharp worm was never moved


def test_after_the_search_track_goes_on_with_the_measure_alone_until_the_cnn_agrees():
    model = lambda err, t: -140.0 if t < 6.0 else err  # noqa: E731 - wrong, then right
    rig = Rig(HybridAutofocus(), best=lambda t: 40.0 + 3.0 * t).run(model, 60)
    reasons = rig.reasons()
    assert reasons[:4] == [R.START, R.REFUTED, R.SEARCH_CONVERGED, R.FOCUSED] and not rig.ctrl.cnn_trusted
    assert R.MEASURE_DROP in reasons                                     # drift: re-refined on the measure
    assert not any(d.reason == R.JUMP for d in rig.decisions[5:])        # the wrong model never moved the lens
    errors = [rig.best(i * 0.1) - z for i, z in enumerate(rig.lens)]
    converged = next(i for i, d in enumerate(rig.decisions) if d.change and d.change.reason == R.SEARCH_CONVERGED)
    assert np.mean(np.abs(errors[converged:]) <= 8) >= 0.9
    rig.run(model, 10)
    back = rig.ctrl.changes[-1]
    assert back.reason == R.CNN_AGREES and (back.previous, back.mode) == (Mode.TRACK, Mode.TRACK)
    assert rig.ctrl.cnn_trusted and rig.ctrl.strikes == 0


def test_a_search_that_ends_on_a_broad_side_lobe_searches_again():
    def lobe(err):  # a broad maximum at err -120 (a defocused side lobe) beats the sharp peak on the coarse grid
        return 1.0 * math.exp(-(err + 120.0) ** 2 / 5000.0) + 0.8 * math.exp(-err * err / 8.0)

    rig = Rig(HybridAutofocus(), best=lambda t: 0.0, z0=20).run(constant(-140.0), 60, measure_fn=lobe)
    reasons = rig.reasons()
    assert R.SEARCH_CONVERGED in reasons
    i = reasons.index(R.SEARCH_CONVERGED)
    assert reasons[i + 1] == R.REFINE_FAILED and rig.ctrl.changes[i + 1].mode == Mode.SEARCH
    assert R.FOCUSED not in reasons


def test_target_changed_goes_back_to_acquire_and_in_search_restarts_it():
    rig = Rig(HybridAutofocus(), best=lambda t: 30.0).run(oracle, 25)
    change = rig.ctrl.target_changed(rig.t_s)
    assert change.reason == R.TARGET_CHANGED and (change.previous, change.mode) == (Mode.TRACK, Mode.ACQUIRE)
    rig.best = lambda t: -70.0
    rig.run(oracle, 20)
    assert abs(rig.error()) <= 1 and rig.ctrl.mode == Mode.TRACK
    ctrl = HybridAutofocus()
    Rig(ctrl, best=lambda t: 60.0).run(constant(-140.0), 6)
    assert ctrl.mode == Mode.SEARCH and ctrl.target_changed(1.0) is None and ctrl.mode == Mode.SEARCH
    Rig(ctrl, best=lambda t: 60.0).run(constant(-140.0), 40)
    assert ctrl.mode == Mode.TRACK and not ctrl.cnn_trusted             # converged, the CNN still wrong
    change = ctrl.target_changed(5.0)
    assert change.reason == R.TARGET_CHANGED and change.mode == Mode.SEARCH


def test_never_moves_on_non_finite_input_and_falls_back_on_garbage_predictions():
    ctrl = HybridAutofocus()
    for args in [(10.0, None, math.nan, 0.0, 0.0, 0.0), (10.0, None, 1.0, 0.0, 0.0, math.inf),
                 (10.0, None, 1.0, math.nan, 0.0, 0.0), (10.0, math.nan, 1.0, 0.0, 0.01, 0.0)]:
        d = ctrl.update(*args)
        assert not d.moves and d.reason == R.NON_FINITE
    n = HybridConfig().unusable_frames
    rig = Rig(HybridAutofocus(), best=lambda t: 100.0).run(constant(math.nan), n - 1)
    assert not any(d.moves for d in rig.decisions) and rig.ctrl.mode == Mode.ACQUIRE
    rig.run(constant(math.nan), 70)
    assert rig.reasons()[1] == R.NO_PREDICTIONS and abs(rig.error()) <= 4  # the search needs no predictions


def test_soft_limits_clamp_every_move():
    cfg = HybridConfig(soft_min_steps=-300, soft_max_steps=300, max_move_steps=5000)
    rig = Rig(HybridAutofocus(cfg, SearchConfig(soft_min_steps=-300, soft_max_steps=300)),
              best=lambda t: 900.0).run(constant(550.0), 80)
    assert max(rig.lens) == 300 and min(rig.lens) >= -300
    assert rig.decisions[0].at_limit and rig.decisions[0].target_steps == 300
    with pytest.raises(ValueError, match="same soft limits"):
        HybridAutofocus(cfg, SearchConfig())


def test_a_prediction_beyond_any_focus_travel_is_garbage_never_a_move():
    """A finite but impossible offset (|offset| > control.MAX_OFFSET_STEPS) counts as unusable, like NaN."""
    rig = Rig(HybridAutofocus(HybridConfig(unusable_frames=3, unsure_frames=3)),
              best=lambda t: 100.0).run(constant(1e12), 2)
    assert not any(d.moves for d in rig.decisions)
    assert rig.decisions[-1].reason == R.IMPLAUSIBLE and "focus travel" in rig.decisions[-1].detail
    rig.run(constant(-MAX_OFFSET_STEPS - 1.0), 2)  # the third unusable one in a row: the search, needing none
    assert R.NO_PREDICTIONS in rig.reasons()


def test_settle_protocol_and_stale_frames():
    ctrl = HybridAutofocus(HybridConfig(consistency_frames=1))
    d = ctrl.update(100.0, None, 0.1, 0.0, 0.01, 0.0)
    assert d.reason == R.JUMP and d.change.reason == R.START
    assert ctrl.update(0.0, None, 1.5, 0.1, 0.11, 100.0).reason == R.MOVING    # record_move not called yet
    ctrl.record_move(0.2)
    assert ctrl.update(0.0, None, 1.5, 0.2, 0.21, 100.0).reason == R.UNSETTLED  # settle 50 ms
    assert ctrl.update(0.0, None, 1.5, 0.3, 5.0, 100.0).reason == R.STALE
    assert ctrl.update(0.0, None, 1.5, 0.3, 0.31, 100.0).reason == R.PROBE      # verified: refine


def test_sigma_gates_the_jump_and_a_clear_unconfident_prediction_steps_to_its_one_sigma_bound():
    cfg = HybridConfig(consistency_frames=1, max_sigma_steps=10.0)
    assert HybridAutofocus(cfg).update(100.0, 5.0, 0.1, 0.1, 0.11, 0.0).reason == R.JUMP
    ctrl = HybridAutofocus(cfg)
    d = ctrl.update(100.0, 60.0, 0.1, 0.0, 0.01, 0.0)
    assert d.reason == R.COLLECTING and not d.moves and "sign unclear" in d.detail  # 100 +- 60: which side?
    d = ctrl.update(100.0, 30.0, 0.1, 0.1, 0.11, 0.0)
    assert d.reason == R.STEP and d.move_steps == 70                   # 100 - 30: the one-sigma bound
    ctrl.record_move(0.12)
    d = ctrl.update(26.0, 5.0, 0.1, 0.2, 0.21, 70.0)                   # plane 96 +- 5 agrees with 100 +- 30
    assert d.reason == R.JUMP and d.move_steps == 26 and ctrl.strikes == 0
    # the same second frame without sigmas: 26 steps after a 70-step move is within 16 + 0.5 * 70
    plain = HybridAutofocus(HybridConfig(consistency_steps=4.0, consistency_fraction=0.1))
    assert plain.update(100.0, None, 0.1, 0.0, 0.01, 0.0).move_steps == 100
    plain.record_move(0.02)
    assert plain.update(26.0, None, 0.1, 0.1, 0.11, 100.0).reason == R.UNDO  # more than 4 + 0.1 * 100


def regressing(err, t):
    """Return (mean, sigma) of the issue's uncertainty model: it regresses to its mean far from focus, and says so."""
    true = [-120.0, -60.0, 0.0, 40.0, 60.0, 90.0, 120.0, 150.0]
    mean = [-159.0, -72.0, -1.0, 44.0, 70.0, 90.0, 66.0, 68.0]
    sigma = [30.0, 12.0, 3.0, 7.0, 8.0, 15.0, 32.0, 57.0]
    return float(np.interp(err, true, mean)), float(np.interp(err, true, sigma))


def test_sigma_agreement_verifies_a_short_jump_of_a_model_that_regresses_to_its_mean():
    # +120 -> 66 +- 32 (not confident, clear sign): a cautious step of 34; there 86 -> ~85 +- 14: confident, jump
    rig = Rig(HybridAutofocus(), best=lambda t: 120.0).run(regressing, 20)
    assert [d.reason for d in rig.decisions[:2]] == [R.STEP, R.JUMP] and rig.lens[0] == 34
    assert rig.reasons() == [R.START, R.NEAR_FOCUS, R.FOCUSED] and rig.ctrl.strikes == 0
    assert abs(rig.error()) <= 1 and rig.ctrl.mode == Mode.TRACK
    # a confident jump that falls short, the lens on the same side, is progress when the rest of the way is
    # within the two sigmas (without them: at most 16 + 0.5 * 63 = 47.5 of the prediction)
    for sigmas, reason in (((24.0, 12.0), R.JUMP), ((None, None), R.UNDO)):
        ctrl = HybridAutofocus()
        assert ctrl.update(63.0, sigmas[0], 0.0, 0.0, 0.01, 0.0).reason == R.JUMP
        ctrl.record_move(0.02)
        d = ctrl.update(50.0, sigmas[1], 0.0, 0.1, 0.11, 63.0)          # plane 113: 50 from 63, within 2 * 26.8
        assert d.reason == reason and ctrl.strikes == (reason == R.UNDO)


def test_a_refuted_plane_with_sigma_is_matched_within_the_sigmas_not_half_the_distance():
    ctrl = HybridAutofocus(HybridConfig(max_strikes=3))
    assert ctrl.update(-100.0, 5.0, 0.0, 0.0, 0.01, 0.0).move_steps == -100  # a confident jump to -100 ...
    ctrl.record_move(0.02)
    d = ctrl.update(-60.0, 5.0, 0.0, 0.1, 0.11, -100.0)                 # ... refuted: now -160 +- 5
    assert d.reason == R.UNDO and ctrl.strikes == 1
    ctrl.record_move(0.12)
    # back at 0: without sigmas a plane within half its distance from the lens (70 for -140) counts as the
    # refuted one; with them -140 +- 5 is another plane (40 > 2 * 7.1), -95 +- 5 the same one
    d = ctrl.update(-95.0, 5.0, 0.0, 0.2, 0.21, 0.0)
    assert d.reason == R.REFUTED and ctrl.strikes == 2
    d = ctrl.update(-140.0, 5.0, 0.0, 0.3, 0.31, 0.0)
    assert d.reason == R.JUMP and d.move_steps == -140 and ctrl.strikes == 2


def test_predictions_never_confident_and_of_unclear_sign_fall_back_to_the_search_within_the_limit():
    n = HybridConfig().unsure_frames
    assert n < HybridConfig().unusable_frames                            # a repeated unsure answer waits less
    huge = lambda err, t: (err, 1000.0)  # noqa: E731 - right on average, but it says it knows nothing
    rig = Rig(HybridAutofocus(), best=lambda t: 100.0).run(huge, n)
    assert rig.reasons() == [R.START, R.NO_PREDICTIONS] and rig.ctrl.mode == Mode.SEARCH
    assert not any(d.moves for d in rig.decisions[:n - 1])              # held, never moved on them
    assert "3 of them finite but unsure" in rig.ctrl.changes[-1].detail
    rig.run(huge, 60)
    assert abs(rig.error()) <= 4                                         # the search finds focus regardless
    # mixed garbage counts as one streak, where NaN glitches do not reset the unsure answers' count
    mixed = lambda err, t: (math.nan, None) if int(t * 10 + 0.5) % 2 else (err, 1000.0)  # noqa: E731
    rig = Rig(HybridAutofocus(), best=lambda t: 100.0).run(mixed, 2 * n - 1)
    assert rig.reasons() == [R.START, R.NO_PREDICTIONS] and not any(d.moves for d in rig.decisions[:2 * n - 2])
    # NaN after a jump: it cannot be verified, and the wait for a prediction ends in the search too
    n = HybridConfig().unusable_frames
    rig = Rig(HybridAutofocus(), best=lambda t: 100.0).run(lambda err, t: 80.0 if t < 0.05 else math.nan, n + 1)
    assert rig.decisions[0].reason == R.JUMP and rig.reasons() == [R.START, R.NO_PREDICTIONS]
    assert not any(d.moves for d in rig.decisions[1:n])


def test_a_constant_answer_with_a_moderate_sigma_is_refuted_and_its_steps_undone():
    # -140 +- 60 everywhere: a clear sign, never confident. Each cautious step (80) agrees with the last plane,
    # but the chain's plane moves with the lens and leaves the first one's two sigmas: undone to its start
    rig = Rig(HybridAutofocus(), best=lambda t: 60.0).run(constant((-140.0, 60.0)), 8)
    assert [d.reason for d in rig.decisions[:4]] == [R.STEP, R.STEP, R.STEP, R.UNDO]
    assert rig.lens[:4] == [-80, -160, -240, 0] and min(rig.lens) >= -240
    assert rig.reasons()[:2] == [R.START, R.REFUTED] and rig.ctrl.mode == Mode.SEARCH
    rig.run(constant((-140.0, 60.0)), 60)
    assert abs(rig.error()) <= 4 and not rig.ctrl.cnn_trusted


def test_config_validates_every_parameter():
    with pytest.raises(ValueError, match="consistency_frames must be an integer >= 1"):
        HybridConfig(consistency_frames=0)
    with pytest.raises(ValueError, match="drop_fraction"):
        HybridConfig(drop_fraction=1.0)
    with pytest.raises(ValueError, match="finite"):
        HybridConfig(measure_noise=math.nan)
    with pytest.raises(ValueError, match="soft_min_steps"):
        HybridConfig(soft_min_steps=10, soft_max_steps=0)
    with pytest.raises(ValueError, match="unknown HybridConfig keys"):
        HybridConfig.from_dict({"gain": 1.0})
    cfg = HybridConfig(probe_steps=4)
    assert HybridConfig.from_dict(cfg.to_dict()) == cfg


def test_best_plane_tracker_learns_the_drift_and_forgets_the_position_on_a_switch():
    kf = BestPlaneTracker()
    assert kf.predict_z(0.0) is None and math.isinf(kf.sigma_z(0.0))
    for t in np.arange(0.0, 4.0, 0.5):
        kf.update(float(t), 10.0 + 3.0 * t, 2.0)
    assert kf.rate_steps_per_s == pytest.approx(3.0, abs=0.5)
    assert kf.predict_z(5.0) == pytest.approx(25.0, abs=2.0) and kf.rate_sigma() < 1.0
    kf.forget_position(4.0)
    assert kf.sigma_z(4.0) > 100 and kf.rate_steps_per_s == pytest.approx(3.0, abs=0.5)
    kf.update(4.0, -50.0, 2.0)
    assert kf.predict_z(4.0) == pytest.approx(-50.0, abs=0.5)
    with pytest.raises(ValueError, match="finite"):
        kf.update(5.0, math.nan, 2.0)
    capped = BestPlaneTracker(max_rate_steps_per_s=5.0)
    for t in (0.0, 0.1, 0.2):
        capped.update(t, 100.0 * t, 0.5)
    assert abs(capped.rate_steps_per_s) <= 5.0


def test_the_search_after_unconfident_predictions_sweeps_first_where_they_lean():
    """Far out, a sigma model may know the side but not the distance (|offset| < 2 sigma: unusable).

    The search it falls back to starts its sweep at that side's end; a model leaning the wrong way costs no more
    than the sweep in its usual order.
    """
    n = HybridConfig().unsure_frames

    def leaning(sign):
        return lambda err, t: (err, 5.0) if abs(err) <= 100 else (sign * 0.3 * err, 60.0)

    frames = {}
    for sign in (1.0, -1.0):
        rig = Rig(HybridAutofocus(), best=lambda t: 150.0).run(leaning(sign), 40)
        assert rig.reasons() == [R.START, R.NO_PREDICTIONS, R.CNN_AGREES, R.NEAR_FOCUS, R.FOCUSED]
        assert rig.lens[n - 1] == (200 if sign > 0 else -200)            # the sweep's first position
        assert abs(rig.error()) <= 1
        frames[sign] = next(i for i, z in enumerate(rig.lens) if abs(150 - z) <= 4)
    assert frames[1.0] <= n + 3 < frames[-1.0] <= n + SearchConfig().frames_per_search()


def test_the_search_hands_back_to_the_cnn_when_it_points_at_one_plane_from_two_positions():
    def near_only(err, t):  # right within 100 steps of focus, garbage ("almost there") farther out
        return err if abs(err) <= 100 else 10.0

    rig = Rig(HybridAutofocus(), best=lambda t: 180.0).run(near_only, 40)
    reasons = rig.reasons()
    assert reasons[:5] == [R.START, R.NEAR_FOCUS, R.REFINE_FAILED, R.NEAR_FOCUS, R.REFINE_FAILED]
    back = rig.ctrl.changes[5]
    assert back.reason == R.CNN_AGREES and (back.previous, back.mode) == (Mode.SEARCH, Mode.ACQUIRE)
    assert reasons[-1] == R.FOCUSED and rig.ctrl.strikes == 0 and abs(rig.error()) <= 1
    searching = sum(d.mode == Mode.SEARCH for d in rig.decisions)
    assert searching < SearchConfig().frames_per_search() // 2          # left the sweep early
    # a constant answer points at a plane that moves with the lens: the search is never left for it
    rig = Rig(HybridAutofocus(), best=lambda t: 60.0).run(constant(-140.0), 40)
    assert R.CNN_AGREES not in rig.reasons() and not rig.ctrl.cnn_trusted and abs(rig.error()) <= 4


def test_the_bias_near_focus_is_learnt_per_worm_from_verified_frames_and_is_the_prior_for_the_next():
    def bias_of(b):
        return lambda err, t: err + b

    ctrl = HybridAutofocus()
    assert ctrl.cnn_bias_steps == 0.0 and ctrl.learnt_bias_steps is None
    rig = Rig(ctrl, best=lambda t: 100.0).run(bias_of(12.0), 30)
    assert rig.ctrl.mode == Mode.TRACK and abs(rig.error()) <= 1
    assert ctrl.cnn_bias_steps == pytest.approx(12.0, abs=1.0) and ctrl.learnt_bias_steps == ctrl.cnn_bias_steps
    ctrl.target_changed(rig.t_s)                       # the next worm starts from the bias learnt so far
    assert ctrl.cnn_bias_steps == pytest.approx(12.0, abs=1.0)
    rig.best = lambda t: 40.0
    rig.run(bias_of(4.0), 40)                          # another worm, another bias: learnt again
    assert abs(rig.error()) <= 1 and ctrl.cnn_bias_steps == pytest.approx(4.0, abs=1.0)
    ctrl.target_changed(rig.t_s)
    assert ctrl.cnn_bias_steps == pytest.approx(8.0, abs=1.0)  # the prior: the median over the worms so far
    assert ctrl.learnt_bias_steps == pytest.approx(8.0, abs=1.0)
    # tuning at run time keeps what was learnt; a new prior replaces it
    ctrl.reconfigure(HybridConfig(refine_window_steps=12.0))
    assert ctrl.cnn_bias_steps == pytest.approx(8.0, abs=1.0) and ctrl.mode == Mode.ACQUIRE
    ctrl.reconfigure(HybridConfig(refine_window_steps=12.0, cnn_bias_steps=-5.0))
    assert ctrl.cnn_bias_steps == -5.0 and ctrl.learnt_bias_steps is None
    # a model 60 steps off in focus is wrong, not biased: nothing is learnt from it, and nothing without a verifier
    wrong = HybridAutofocus(HybridConfig(cnn_bias_steps=3.0))
    Rig(wrong, best=lambda t: 0.0).run(lambda err, t: err + 60.0 if abs(err) < 30 else err, 40)
    assert wrong.learnt_bias_steps is None and wrong.cnn_bias_steps == 3.0
    fixed = HybridAutofocus(HybridConfig(bias_frames=0, cnn_bias_steps=2.0))
    Rig(fixed, best=lambda t: 100.0).run(bias_of(12.0), 30)
    assert fixed.cnn_bias_steps == 2.0 and fixed.learnt_bias_steps is None


def test_a_predicted_plane_after_a_switch_is_refined_whatever_the_cnn_says():
    rig = Rig(HybridAutofocus(), best=lambda t: 30.0).run(oracle, 25)
    assert rig.ctrl.mode == Mode.TRACK
    change = rig.ctrl.target_changed(rig.t_s, z_hint_steps=-75.0, hint_sigma_steps=6.0)
    assert change.mode == Mode.ACQUIRE and "z=-75" in change.detail
    assert rig.ctrl.best_z_steps(rig.t_s) == pytest.approx(-75.0)
    rig.best = lambda t: -70.0
    n = len(rig.decisions)
    rig.run(constant(math.nan), 12)                    # no CNN at all: the measure finds the predicted worm
    first = rig.decisions[n]
    assert first.reason == R.PROBE and first.target_steps == -75 and first.change.reason == R.PLANE_PREDICTED
    assert rig.ctrl.mode == Mode.TRACK and abs(rig.error()) <= 2
    # an uncertain prediction is no hint: back to acquire on the CNN
    change = rig.ctrl.target_changed(rig.t_s, z_hint_steps=50.0, hint_sigma_steps=40.0)
    assert change.mode == Mode.ACQUIRE and "plate tilt" not in change.detail
    rig.best = lambda t: 120.0
    n = len(rig.decisions)
    rig.run(oracle, 10)
    assert rig.decisions[n].reason == R.JUMP and abs(rig.error()) <= 1


def test_track_follows_a_steady_drift_on_the_trusted_cnns_agreeing_planes():
    """Between measure refines, a trusted CNN's confident planes feed the best-plane filter: the lens follows."""
    rng = np.random.default_rng(0)
    noisy = lambda err, t: (err + rng.normal(0.0, 2.0), 4.0)  # noqa: E731 - unbiased, sure, 2 steps of noise
    rig = Rig(HybridAutofocus(), best=lambda t: 150.0 + 2.0 * t)
    errors = []
    for _ in range(300):
        errors.append(abs(rig.error()))
        rig.step(noisy)
    assert max(errors[30:]) <= 4.0                                       # measure peaks alone: up to 6.8 steps
    assert rig.reasons().count(R.MEASURE_DROP) <= 1                      # measure peaks alone: 3 re-refines
    assert sum(d.reason == R.FOLLOW_DRIFT for d in rig.decisions) >= 20 and rig.ctrl.cnn_trusted
    # a CNN that disagrees with the estimate is not fused: the lens stays on the measure's focus
    rig = Rig(HybridAutofocus(), best=lambda t: 150.0).run(noisy, 30)
    assert rig.ctrl.mode == Mode.TRACK and abs(rig.error()) <= 2
    rig.run(lambda err, t: (err + 25.0, 4.0), 7)                         # 25 steps off, within disagree_steps
    assert abs(rig.error()) <= 2 and not any(d.moves for d in rig.decisions[-7:])


def test_unsure_finite_answers_search_after_unsure_frames_while_nan_glitches_wait_for_unusable_frames():
    cfg = HybridConfig()
    unsure = lambda err, t: (0.4 * err, 57.0)  # noqa: E731 - +60 +- 57 at +150: the side, not the distance
    rig = Rig(HybridAutofocus(), best=lambda t: 150.0).run(unsure, cfg.unsure_frames)
    assert rig.reasons() == [R.START, R.NO_PREDICTIONS] and rig.decisions[-1].moves
    assert rig.decisions[-1].target_steps > 0                             # the sweep starts where they lean
    # NaN glitches hold up to unusable_frames - 1 frames; the first usable answer after them jumps
    glitch = lambda err, t: (math.nan, None) if t < (cfg.unusable_frames - 1.5) * 0.1 else (err, 4.0)  # noqa: E731
    rig = Rig(HybridAutofocus(), best=lambda t: 150.0).run(glitch, cfg.unusable_frames)
    assert R.NO_PREDICTIONS not in rig.reasons() and rig.decisions[-1].reason == R.JUMP
    assert not any(d.moves for d in rig.decisions[:-1])
    # a tunable count
    rig = Rig(HybridAutofocus(HybridConfig(unsure_frames=5)), best=lambda t: 150.0).run(unsure, 4)
    assert rig.reasons() == [R.START] and not any(d.moves for d in rig.decisions)
    with pytest.raises(ValueError, match="unsure_frames must be an integer >= 1"):
        HybridConfig(unsure_frames=0)


def test_a_plane_jump_the_tracker_did_not_report_resets_the_estimate_not_the_drift():
    """A worm switch without target_changed: the new plane, far from the estimate, replaces it (no mixed plane)."""
    rng = np.random.default_rng(1)
    noisy = lambda err, t: (err + rng.normal(0.0, 2.0), 5.0)  # noqa: E731
    rig = Rig(HybridAutofocus(), best=lambda t: 150.0 + 2.0 * t if t < 10.0 else 90.0 + 2.0 * t)
    errors = []
    for _ in range(200):
        errors.append(abs(rig.error()))
        rig.step(noisy)
    assert R.FAR_PREDICTION in rig.reasons() and rig.ctrl.mode == Mode.TRACK
    assert max(errors[130:]) <= 4.0                                      # back on the new plane within 3 s
    assert rig.ctrl.tracker.rate_steps_per_s == pytest.approx(2.0, abs=1.0)
