"""HybridLoop in the closed-loop runner on the physical simulator's frames, with the stand-in models
(core/fake_models.py): the truth, a constant wrong answer, the right magnitude with a random sign."""
from __future__ import annotations

import numpy as np
import pytest

from celegans_autofocus.core.closed_loop import HybridLoop, OpticsFrames, Scenario, run_episode
from celegans_autofocus.core.fake_models import ConstantModel, OracleModel, RandomSignModel, TruthTap
from celegans_autofocus.core.hybrid import HybridConfig


def _run(scenario, make_model, config=None):
    tap = TruthTap(OpticsFrames(scenario, 300, fov_px=300))
    loop = HybridLoop(make_model(tap), config)
    return run_episode(scenario, loop, tap), loop


def test_oracle_through_the_hybrid_reaches_focus_in_two_frames_and_follows_a_switch():
    sc = Scenario("step", seed=11, start_offset_steps=150.0, duration_s=4.0, drift_steps_per_s=2.0,
                  switch_times_s=(2.0,), switch_jumps_steps=(-70.0,))
    trace, loop = _run(sc, OracleModel)
    s = trace.summary()
    assert s["frames_to_focus"] <= 2 and s["in_focus_fraction_tracking"] >= 0.85
    assert trace.reasons[0] == "acquire:jump" and "target_changed" in [c.reason.value for c in loop.ctrl.changes]
    assert np.isfinite(trace.predicted_offset).sum() > 20


def test_a_constant_wrong_model_falls_back_to_the_search_and_still_reaches_focus():
    sc = Scenario("wrong", seed=12, start_offset_steps=60.0, duration_s=6.0)
    trace, loop = _run(sc, lambda tap: ConstantModel(-140.0))
    s = trace.summary()
    assert s["frames_to_focus"] is not None and abs(s["final_error_steps"]) <= 8
    modes = [c.mode.value for c in loop.ctrl.changes]
    assert "search" in modes and not loop.ctrl.cnn_trusted
    assert min(trace.lens_z) >= -1000 and max(trace.lens_z) <= 1000


def test_random_sign_model_is_caught_by_verification():
    sc = Scenario("sign", seed=13, start_offset_steps=-120.0, duration_s=5.0)
    trace, loop = _run(sc, lambda tap: RandomSignModel(tap, seed=3))
    s = trace.summary()
    assert s["frames_to_focus"] is not None and abs(s["final_error_steps"]) <= 8


def test_stand_in_models_and_the_tap():
    tap = TruthTap(OpticsFrames(Scenario("t", seed=1, start_offset_steps=0.0), 64))
    with pytest.raises(RuntimeError, match="no frame"):
        OracleModel(tap).predict(np.zeros((4, 4)))
    tap.frame(-37.0, 0)
    assert OracleModel(tap).predict(None) == -37.0 and ConstantModel(5.0).predict(None) == 5.0
    draws = [RandomSignModel(tap, seed=0).predict(None) for _ in range(3)]
    assert len(set(draws)) == 1 and abs(draws[0]) == 37.0                    # seeded
    model = RandomSignModel(tap, seed=0)
    assert {model.predict(None) for _ in range(40)} == {-37.0, 37.0}


def test_hybrid_loop_config_is_used():
    sc = Scenario("cfg", seed=2, start_offset_steps=100.0, duration_s=1.0)
    _, loop = _run(sc, OracleModel, HybridConfig(consistency_frames=2))
    assert loop.ctrl.config.consistency_frames == 2 and loop.settle_s == HybridConfig().settle_s
