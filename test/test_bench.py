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

"""bench command: a tiny run (real optics, real ONNX model, both controllers) and its outputs; bad input."""
from __future__ import annotations

import json

import pytest

from celegans_autofocus.cli import main
from celegans_autofocus.commands.bench import format_table, table_rows
from onnx_models import gradient_energy_model

TINY = ["--episodes", "1", "--duration-s", "2", "--kinds", "step150", "switch", "--measures", "brenner",
        "--search-fov", "64"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return gradient_energy_model(tmp_path_factory.mktemp("m") / "g.onnx", a=-50.0, b=40.0, input_px=32)


def test_tiny_bench_runs_both_controllers_on_the_same_scenarios(tmp_path, model, capsys):
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        rc = main(["bench", "--model", str(model), *TINY, "--summary-json", str(out),
                   "--plot", str(tmp_path / "bench.png"), "--markdown", str(tmp_path / "bench.md")])
        assert rc == 0
    stdout = capsys.readouterr().out
    a, b = (json.loads(p.read_text()) for p in outs)
    pairs = [(e["scenario"], e["controller"]) for e in a["episodes"]]
    rows = ["cnn", "search/brenner", "hybrid/bundled", "hybrid/constant", "hybrid/random_sign", "hybrid/oracle"]
    assert pairs == [(sc, c) for sc in ("step150-0", "switch-0") for c in rows]
    assert [s["start_offset_steps"] for s in a["scenarios"]][0] == 150.0
    assert len(a["scenarios"][1]["switch_times_s"]) == 2
    # deterministic apart from the measured processing times
    strip = [{k: v for k, v in e.items() if not k.startswith("latency")} for e in a["episodes"]]
    assert strip == [{k: v for k, v in e.items() if not k.startswith("latency")} for e in b["episodes"]]
    for e in a["episodes"]:
        assert e["n_frames"] == 30 and 0.0 <= e["in_focus_fraction"] <= 1.0 and e["steps_travelled"] >= 0
        assert e["passed_soft_limits"] is False and -1000 <= e["lens_min_steps"] <= e["lens_max_steps"] <= 1000
        assert (e["fallbacks"] is None) == (not e["controller"].startswith("hybrid"))
    oracle = [e for e in a["episodes"] if e["controller"] == "hybrid/oracle"]
    assert oracle[0]["frames_to_focus"] <= 3  # the truth through the hybrid: one jump from +-150
    assert {(r["kind"], r["controller"]) for r in a["table"]} >= {("all", "cnn"), ("all", "search/brenner")}
    assert "| step150 | cnn | 1 |" in stdout and "| all | search/brenner | 2 |" in stdout
    md = (tmp_path / "bench.md").read_text()
    assert f"celegans-autofocus bench --model {model} --episodes 1 --kinds step150 switch" in md
    assert "| switch | search/brenner | 1 |" in md and "| all | hybrid/constant | 2 |" in md
    assert "--hybrid-models bundled constant random_sign oracle --wrong-offset-steps -140 --hybrid-bias-steps 0" in md
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_table_statistics_treat_never_as_worst():
    eps = [{"kind": "k", "controller": "c", "frames_to_focus": f, "final_error_steps": -3.0,
            "in_focus_fraction": 0.5, "in_focus_fraction_tracking": 0.8, "steps_travelled": 10.0,
            "latency_p50_ms": 1.0, "latency_p95_ms": 2.0} for f in (2, 3, 4, None)]
    row = table_rows(eps)[0]
    assert row["reached"] == 0.75 and row["frames_to_focus_median"] == 3
    assert row["frames_to_focus_p90"] == float("inf") and row["final_abs_error_median_steps"] == 3.0
    assert "| k | c | 4 | 75% | 3 | never | 3.0 |" in format_table([row])


def test_drift2_kind_runs_at_the_slow_drift_rate(tmp_path, model):
    out = tmp_path / "d.json"
    assert main(["bench", "--model", str(model), "--episodes", "1", "--duration-s", "0.5", "--kinds", "drift2",
                 "drift", "--controllers", "cnn", "--summary-json", str(out)]) == 0
    scenarios = json.loads(out.read_text())["scenarios"]
    assert [s["name"] for s in scenarios] == ["drift2-0", "drift-0"]
    assert [abs(s["drift_steps_per_s"]) for s in scenarios] == [2.0, 4.0]


def test_look_renders_every_controllers_frames_through_that_look(tmp_path, model):
    """--look: the CNN's, the search's and the hybrid's frames all come from the named look's optics."""
    from celegans_autofocus.cli import build_parser
    from celegans_autofocus.commands.bench import _controllers
    from celegans_autofocus.core.closed_loop import Scenario
    from celegans_autofocus.core.optics import look_config
    from celegans_autofocus.core.predictor import FocusPredictor

    parser, _ = build_parser()
    args = parser.parse_args(["bench", "--model", str(model), "--look", "real_adult", "--controllers", "cnn", "search",
                              "hybrid", "--hybrid-models", "bundled", "oracle"])
    sc = Scenario("start", seed=0, start_offset_steps=50.0, duration_s=0.5)
    rows = _controllers(args, FocusPredictor(model), 96, 500)
    names = [name for name, _ in rows]
    assert names[0] == "cnn" and names[-2:] == ["hybrid/bundled", "hybrid/oracle"]
    assert any(name.startswith("search/") for name in names)
    for name, make in rows:
        frames = make(sc)[1]
        frames = getattr(frames, "frames", frames)  # the hybrid's frames come through a truth tap
        assert frames.config == look_config("real_adult"), name
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--look", "dark"])
    soft = parser.parse_args(["bench", "--model", str(model), "--controllers", "hybrid", "--hybrid-models", "oracle",
                              "--hybrid-min-peak-contrast", "0.07"])
    assert _controllers(soft, None, 96, 500)[0][1](sc)[0].ctrl.config.min_peak_contrast == 0.07


def test_bench_bad_input(tmp_path, model, capsys):
    assert main(["bench", "--model", str(tmp_path / "none.onnx"), *TINY]) == 2
    assert "none.onnx: model file not found" in capsys.readouterr().err
    assert main(["bench", "--model", str(model), *TINY, "--episodes", "0"]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err
    assert main(["bench", "--model", str(model), *TINY, "--fov", "wide"]) == 2
    assert "--fov must be 'full', 'auto' or a size in px, got 'wide'" in capsys.readouterr().err
    assert main(["bench", "--model", str(model), *TINY, "--measures", "sharpness"]) == 2
    assert "unknown focus measure 'sharpness'" in capsys.readouterr().err
    assert main(["bench", "--model", str(model), *TINY, "--hybrid-min-peak-contrast", "-1"]) == 2
    assert "min_peak_contrast" in capsys.readouterr().err
    assert main(["bench", "--model", str(model), *TINY, "--latency-s", "-1"]) == 2
    assert "--latency-s must be" in capsys.readouterr().err


def test_view_defaults_follow_the_model(tmp_path):
    import argparse

    from celegans_autofocus.commands.bench import _view
    from celegans_autofocus.core.predictor import FocusPredictor
    from onnx_models import make_metadata, pixel_model

    crop = FocusPredictor(pixel_model(tmp_path / "c.onnx", input_px=32, metadata=make_metadata(32, input_view="crop")))
    full = FocusPredictor(pixel_model(tmp_path / "f.onnx", input_px=32, metadata=make_metadata(32, input_view="full")))
    ns = argparse.Namespace
    assert _view(ns(fov="auto", render_px=0), crop) == (500, 500)  # native crop, as the camera gives it
    assert _view(ns(fov="auto", render_px=128), crop) == (128, 500)
    assert _view(ns(fov="auto", render_px=0), full) == (32, None)  # full frame at the model input
    assert _view(ns(fov="750", render_px=0), full) == (750, 750)
    with pytest.raises(ValueError, match="--render-px"):
        _view(ns(fov="auto", render_px=8), crop)


@pytest.mark.parametrize("session", ["carry", "cold"])
def test_a_hybrid_session_carries_the_bias_learnt_on_earlier_episodes(session):
    import argparse

    from celegans_autofocus.commands.bench import _controllers, _scenarios, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--episodes", "3", "--kinds", "start", "--controllers", "hybrid", "--hybrid-models",
                              "oracle", "constant", "--hybrid-session", session])
    (_, make_oracle), (_, make_constant) = _controllers(args, None, 64, 64)
    scenarios = _scenarios(args)
    first, _ = make_oracle(scenarios[0])
    assert first.ctrl.config.cnn_bias_steps == 0.0
    first.ctrl._learn_bias([6.0, 7.0, 5.0])                     # as if it had learnt +6 on the first episode's worm
    second, _ = make_oracle(scenarios[1])
    assert second.ctrl.config.cnn_bias_steps == (6.0 if session == "carry" else 0.0)
    second.ctrl._learn_bias([10.0] * 3)
    third, _ = make_oracle(scenarios[2])
    assert third.ctrl.config.cnn_bias_steps == (8.0 if session == "carry" else 0.0)  # median over the episodes
    assert make_constant(scenarios[1])[0].ctrl.config.cnn_bias_steps == 0.0         # each model its own session


def test_a_plot_path_without_a_suffix_is_written_and_named_as_the_png_it_is(tmp_path):
    from celegans_autofocus.plots import plot_focus_timeline

    written = plot_focus_timeline([0.0, 1.0], [0.0, 0.0], [5.0, 0.0], None, tmp_path / "timeline")
    assert written == tmp_path / "timeline.png" and written.stat().st_size > 0
    assert not (tmp_path / "timeline").exists()
