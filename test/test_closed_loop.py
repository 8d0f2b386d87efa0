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

"""core/closed_loop.py: drift trajectories, motor kinematics, episode metrics and the frame-by-frame runner.

The runner is driven by real ONNX models through FocusPredictor and FocusController, and by real optics for the
search.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from celegans_autofocus.core.closed_loop import (FOCUS_HOLD_FRAMES, CnnLoop, FocusDrift, MotorSim, OpticsFrames,
                                                 Scenario, SearchLoop, make_scenarios, run_episode, summarize_episode)
from celegans_autofocus.core.metrics import SUMMARY_KEYS
from celegans_autofocus.core.optics import OpticsConfig
from celegans_autofocus.core.predictor import FocusPredictor
from onnx_models import nan_model, pixel_model

# ---------------------------------------------------------------- FocusDrift


def test_drift_is_linear_with_jumps_at_switch_times():
    drift = FocusDrift(10.0, drift_steps_per_s=3.0, switch_times_s=[2.0, 1.0], switch_jumps_steps=[-5.0, 40.0])
    assert drift.best_z_steps(0.0) == 10.0
    assert drift.best_z_steps(0.5) == pytest.approx(11.5)
    assert drift.best_z_steps(1.0) == pytest.approx(10 + 3 + 40)  # jump at t >= 1.0 (sorted by time)
    assert drift.best_z_steps(2.5) == pytest.approx(10 + 7.5 + 40 - 5)
    assert [drift.target_index(t) for t in (0.0, 0.99, 1.0, 2.0, 9.0)] == [0, 0, 1, 2, 2]


def test_random_walk_is_seeded_and_independent_of_query_order():
    times = np.linspace(0, 5, 37)
    a = FocusDrift(0.0, random_walk_steps_per_sqrt_s=2.0, seed=4)
    b = FocusDrift(0.0, random_walk_steps_per_sqrt_s=2.0, seed=4)
    c = FocusDrift(0.0, random_walk_steps_per_sqrt_s=2.0, seed=5)
    forward = [a.best_z_steps(t) for t in times]
    backward = [b.best_z_steps(t) for t in times[::-1]][::-1]
    assert forward == pytest.approx(backward)
    assert not np.allclose(forward, [c.best_z_steps(t) for t in times])
    assert np.std(np.diff(forward)) > 0.1  # it really walks


def test_drift_rejects_bad_parameters():
    with pytest.raises(ValueError, match="same length"):
        FocusDrift(0.0, switch_times_s=[1.0], switch_jumps_steps=[])
    with pytest.raises(ValueError, match="finite"):
        FocusDrift(math.nan)


# ---------------------------------------------------------------- metrics


def test_summarize_episode_on_a_hand_made_error_trace():
    err = [120.0, 60.0, 9.0, -8.0, 2.0, 30.0, 1.0, 0.0, -3.0, 4.0]
    s = summarize_episode(err, latency_ms=[1.0, 2.0, 3.0, math.nan, 4.0], lens_z_steps=[0, 60, 111, 128],
                          hold_frames=1)
    assert s["frames_to_focus"] == 3
    assert s["final_error_steps"] == 4.0
    assert s["in_focus_fraction"] == pytest.approx(6 / 10)
    assert s["in_focus_fraction_tracking"] == pytest.approx(6 / 7)
    assert s["steady_abs_error_steps"] == pytest.approx(3.0)
    assert s["latency_p50_ms"] == pytest.approx(2.5) and s["latency_p95_ms"] == pytest.approx(3.85)
    assert s["steps_travelled"] == 128.0 and s["n_frames"] == 10
    assert set(SUMMARY_KEYS) <= set(s) and s["n"] == 10 and s["mae_steps"] == pytest.approx(237 / 10)
    held = summarize_episode(err)               # the default: reached = 3 consecutive in-focus frames
    assert (FOCUS_HOLD_FRAMES == 3 and held["frames_to_focus"] == 6 and held["latency_p50_ms"] is None
            and held["steps_travelled"] is None)
    never = summarize_episode([50.0, -40.0], steps_travelled=7)
    assert never["frames_to_focus"] is None and never["in_focus_fraction_tracking"] == 0.0
    assert never["steps_travelled"] == 7.0


def test_summarize_episode_rejects_garbage():
    with pytest.raises(ValueError, match="non-empty"):
        summarize_episode([])
    with pytest.raises(ValueError, match="non-finite"):
        summarize_episode([1.0, math.inf])


def test_motor_moves_at_speed_and_a_new_command_preempts():
    motor = MotorSim(0.0, speed_steps_per_s=100.0, settle_s=0.05)
    motor.command(50.0, 1.0)
    assert motor.position_steps(1.25) == pytest.approx(25.0) and motor.moving(1.25)
    assert motor.move_end_s == pytest.approx(1.5) and motor.settled_at_s == pytest.approx(1.55)
    motor.command(0.0, 1.25)  # reverse halfway
    assert motor.position_steps(1.3) == pytest.approx(20.0)
    assert motor.position_steps(9.0) == 0.0 and motor.travelled_steps == pytest.approx(50.0)
    with pytest.raises(ValueError, match="finite"):
        motor.command(math.nan, 2.0)


def test_make_scenarios_is_seeded_and_covers_the_kinds():
    a, b = make_scenarios(2, seed=3), make_scenarios(2, seed=3)
    assert a == b and a != make_scenarios(2, seed=4)
    assert [s.name for s in a] == ["start-0", "start-1", "drift-0", "drift-1", "switch-0", "switch-1"]
    assert all(abs(s.start_offset_steps) <= 200 for s in a)
    assert all(s.drift_steps_per_s == 0 for s in a[:2]) and all(abs(s.drift_steps_per_s) == 4 for s in a[2:])
    assert all(len(s.switch_times_s) == 2 for s in a[4:]) and all(not s.switch_times_s for s in a[:4])
    with pytest.raises(ValueError, match="unknown scenario kinds"):
        make_scenarios(1, kinds=["tilt"])


# ---------------------------------------------------------------- runner

A, B, PX = 100.0, -400.0, 128


class EncodedOffsetFrames:
    """Frames whose bright-pixel share encodes the true offset: a perfect-predictor test rig.

    ``pixel_model(a=A, b=B)`` (reading the z-scored pixel [0, 0]) predicts the offset exactly.
    """

    def frame(self, offset_steps: float, target_index: int) -> np.ndarray:
        x = (offset_steps - B) / A  # z-score of a bright pixel when a share f is bright: sqrt((1-f)/f)
        n_bright = int(round(PX * PX / (1 + x * x)))
        img = np.zeros(PX * PX, np.uint8)
        img[:n_bright] = 200
        return img.reshape(PX, PX)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return FocusPredictor(pixel_model(tmp_path_factory.mktemp("m") / "oracle.onnx", a=A, b=B, input_px=PX))


def test_perfect_predictions_reach_focus_in_two_frames_and_track_drift(oracle):
    assert oracle.predict(EncodedOffsetFrames().frame(150.0, 0)) == pytest.approx(150.0, abs=1.0)
    # frame 0 at t=0 -> command at 30 ms -> 150 steps at 2000 steps/s end at 105 ms; frame 1 (67 ms)
    # is mid-move, frame 2 (133 ms) sees the lens at focus (the law waits for the settle time).
    sc = Scenario("step", seed=1, start_offset_steps=150.0, duration_s=2.0)
    trace = run_episode(sc, CnnLoop(oracle), EncodedOffsetFrames())
    s = trace.summary()
    assert s["frames_to_focus"] == 2 and abs(s["final_error_steps"]) < 1.0
    assert trace.reasons[:4] == ["move", "unsettled", "unsettled", "in_focus"]  # settle_s = 50 ms
    assert s["steps_travelled"] == pytest.approx(150.0, abs=1.0)
    drift = Scenario("drift", seed=2, start_offset_steps=-180.0, duration_s=6.0, drift_steps_per_s=4.0,
                     switch_times_s=(3.0,), switch_jumps_steps=(90.0,))
    s = run_episode(drift, CnnLoop(oracle), EncodedOffsetFrames()).summary()
    assert s["frames_to_focus"] <= 3 and s["in_focus_fraction"] >= 0.9


def test_nan_model_never_moves_the_motor(tmp_path):
    sc = Scenario("nan", seed=0, start_offset_steps=100.0, duration_s=1.0)
    trace = run_episode(sc, CnnLoop(FocusPredictor(nan_model(tmp_path / "nan.onnx"))), EncodedOffsetFrames())
    assert trace.steps_travelled == 0.0 and set(trace.reasons) == {"non_finite"}
    assert np.isnan(trace.predicted_offset).all()


def test_episodes_on_the_optics_are_deterministic_and_the_search_converges():
    sc = Scenario("start", seed=3, start_offset_steps=-120.0, duration_s=5.0)
    runs = [run_episode(sc, SearchLoop(measure="brenner"), OpticsFrames(sc, 256, fov_px=256, config=OpticsConfig()))
            for _ in range(2)]
    assert runs[0].lens_z == runs[1].lens_z and runs[0].reasons == runs[1].reasons
    s = runs[0].summary()
    # a coarse sweep of +-200 steps comes first: the search needs many frames, then holds focus
    assert s["frames_to_focus"] is not None and 10 < s["frames_to_focus"] < 60
    assert abs(s["final_error_steps"]) <= 8 and s["steps_travelled"] >= 400
    frames = OpticsFrames(sc, 64, config=OpticsConfig())  # the CNN's full-frame view keeps the frame's aspect
    assert frames.frame(0.0, 0).shape == (48, 64)
    crop = OpticsFrames(sc, 64, fov_px=300, config=OpticsConfig())
    assert crop.frame(0.0, 0).shape == (64, 64) and not np.array_equal(crop.frame(0.0, 0), crop.frame(0.0, 1))
