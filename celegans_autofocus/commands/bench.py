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

"""``celegans-autofocus bench``: CNN one-shot, classical search and hybrid autofocus, same scenes and seeds.

Scenario kinds (``--episodes`` of each): ``step150`` (static plane, start at +-150 steps),
``start`` (static plane, start uniform in +-200), ``drift2`` and ``drift`` (plate-tilt drift of
``--slow-drift-steps-per-s`` / ``--drift-steps-per-s`` and a random walk), ``switch`` (drift plus
two switches to another worm at another height). Each episode runs once with each controller on
the same simulated scene, trajectory and motor: (a) ``cnn``: the ONNX model through the one-shot
control law; (b) ``search``: the search autofocus on each of ``--measures``; (c) ``hybrid``
(core.hybrid) with each of ``--hybrid-models``: the bundled/given ONNX model, a constant wrong
model, a random-sign model and an oracle (the simulator's truth).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HELP = "closed-loop benchmark: CNN one-shot, classical search and hybrid autofocus on the same scenarios"

KINDS = ("step150", "start", "drift2", "drift", "switch")
HYBRID_MODELS = ("bundled", "constant", "random_sign", "oracle")
CONTROLLERS = ("cnn", "search", "hybrid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.focus import DEFAULT_MEASURE
    from ..core.optics import LOOKS, SIMULATOR_LOOK

    g = parser.add_argument_group("model")
    g.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled models/default.onnx)")
    g.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = its default)")
    g.add_argument("--fov", default="auto",
                   help="the CNN's camera view: 'full', a crop side in px around the "
                        "target worm, or 'auto' (crop 500 for crop-trained models, else full)")
    g.add_argument("--render-px", type=int, default=0,
                   help="render the CNN's view this many px wide (capped at the view's native size) before "
                        "the model's preprocessing; 0 = native resolution for a crop view (what the camera "
                        "gives), the model's input size for the full frame (native is too slow there)")
    g = parser.add_argument_group("scenarios")
    g.add_argument("--episodes", type=int, default=4, help="episodes per scenario kind")
    g.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="scenario kinds to run")
    g.add_argument("--seed", type=int, default=0, help="seed of the scenarios and scenes")
    g.add_argument("--look", default=SIMULATOR_LOOK, choices=list(LOOKS),
                   help="the simulator's look (core.optics.LOOKS; real_adult: fitted to real in-focus adults; "
                        "real_adult_mottled: with real plates' background mottle; default: the first stages' look)")
    g.add_argument("--duration-s", type=float, default=12.0, help="episode length (simulated seconds)")
    g.add_argument("--fps", type=float, default=15.0, help="camera frame rate")
    g.add_argument("--max-start-offset-steps", type=float, default=200.0,
                   help="start offsets are uniform in +- this (kinds start/drift/switch)")
    g.add_argument("--drift-steps-per-s", type=float, default=4.0, help="plate-tilt drift of the best plane "
                   "(kinds drift and switch)")
    g.add_argument("--slow-drift-steps-per-s", type=float, default=2.0, help="plate-tilt drift of kind drift2")
    g.add_argument("--motor-speed-steps-per-s", type=float, default=2000.0, help="focus motor speed")
    g.add_argument("--latency-s", type=float, default=0.03,
                   help="simulated time from a frame's stamp to the motor command (both controllers)")
    g = parser.add_argument_group("controllers")
    g.add_argument("--controllers", nargs="+", default=list(CONTROLLERS), choices=CONTROLLERS)
    g.add_argument("--measures", nargs="+", default=list(dict.fromkeys(["vollath_f5", DEFAULT_MEASURE])),
                   help="focus measures of the search autofocus, one search controller each "
                        "(vollath_f5 is the paper's; the other is label's default measure)")
    g.add_argument("--hybrid-models", nargs="+", default=list(HYBRID_MODELS), choices=HYBRID_MODELS,
                   help="the hybrid controller's model, one hybrid controller each: bundled (the --model), "
                        "constant (always --wrong-offset-steps), random_sign (the true |offset| with a random "
                        "sign, seeded), oracle (the simulator's true offset)")
    g.add_argument("--wrong-offset-steps", type=float, default=-140.0, help="the constant wrong model's answer")
    g.add_argument("--hybrid-bias-steps", type=float, default=0.0,
                   help="prior bias near focus of the ONNX model for hybrid/bundled (HybridConfig.cnn_bias_steps, "
                        "e.g. the bias bag-eval measured); 0 = none, the hybrid learns it online in focus")
    g.add_argument("--hybrid-min-peak-contrast", type=float, default=None,
                   help="HybridConfig.min_peak_contrast of every hybrid row (how far a refined measure peak must "
                        "stand above its neighbours; softer optics give flatter peaks); default: HybridConfig's")
    g.add_argument("--hybrid-session", choices=("carry", "cold"), default="carry",
                   help="carry: each hybrid row runs its episodes in order as one session, every episode starting "
                        "with the model bias the hybrid learnt on the earlier ones (as the node keeps it from "
                        "worm to worm; the first episode starts from --hybrid-bias-steps); cold: every episode "
                        "starts from --hybrid-bias-steps")
    g.add_argument("--search-fov", type=int, default=500,
                   help="the search measures a native-resolution square ROI of this side (px) on the "
                        "target worm, as a tracker's autofocus ROI")
    g = parser.add_argument_group("output")
    g.add_argument("--summary-json", type=Path, default=None, help="write every episode and the table as JSON")
    g.add_argument("--plot", type=Path, default=None, help="write the benchmark figure (PNG)")
    g.add_argument("--markdown", type=Path, default=None,
                   help="write the table as Markdown with the command and machine (e.g. benchmarks/bench.md)")


def _scenarios(args: argparse.Namespace) -> list:
    from ..core.closed_loop import Scenario, make_scenarios

    common = dict(duration_s=args.duration_s, fps=args.fps,
                  motor_speed_steps_per_s=args.motor_speed_steps_per_s,
                  processing_latency_s=args.latency_s)
    out = []
    rng = np.random.default_rng(args.seed)
    if "step150" in args.kinds:
        for i in range(args.episodes):
            out.append(Scenario(name=f"step150-{i}", seed=int(rng.integers(0, 2**31 - 1)),
                                start_offset_steps=150.0 if i % 2 == 0 else -150.0, **common))
    other = [k for k in args.kinds if k not in ("step150", "drift2")]
    if other:
        out += make_scenarios(args.episodes, seed=args.seed + 1, kinds=other,
                              max_start_offset_steps=args.max_start_offset_steps,
                              drift_steps_per_s=args.drift_steps_per_s, **common)
    if "drift2" in args.kinds:
        slow = make_scenarios(args.episodes, seed=args.seed + 2, kinds=["drift"],
                              max_start_offset_steps=args.max_start_offset_steps,
                              drift_steps_per_s=args.slow_drift_steps_per_s, **common)
        out += [replace(sc, name=sc.name.replace("drift", "drift2")) for sc in slow]
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(out, key=lambda sc: order[sc.name.rsplit("-", 1)[0]])  # stable: table order


def _view(args: argparse.Namespace, predictor) -> tuple[int, int | None]:
    """(side in px to render the CNN's view at, crop side in px or None for the full frame)."""
    if args.render_px < 0 or 0 < args.render_px < 16:
        raise ValueError(f"--render-px must be 0 (the model input) or >= 16, got {args.render_px}")
    if args.fov == "auto":
        view = predictor.metadata.get("input_view") if predictor is not None else "full"
        fov = 500 if view == "crop" else None
    elif args.fov == "full":
        fov = None
    else:
        try:
            fov = int(args.fov)
        except ValueError:
            raise ValueError(f"--fov must be 'full', 'auto' or a size in px, got {args.fov!r}") from None
        if fov < 16:
            raise ValueError(f"--fov must be at least 16 px, got {fov}")
    if args.render_px:
        return args.render_px, fov
    if fov is not None:
        return fov, fov
    return (predictor.spec.input_px if predictor is not None else 256), None


def _quantile(values: list[float], q: float) -> float:
    """Return an observed value (no interpolation, so 'never' = inf stays inf); NaN when empty."""
    vals = [v for v in values if v is not None]
    return float(np.quantile(vals, q, method="inverted_cdf")) if vals else math.nan


def table_rows(episodes: list[dict]) -> list[dict]:
    """One row per (kind, controller) and per controller over all kinds: the benchmark table."""
    rows = []
    kinds = list(dict.fromkeys(e["kind"] for e in episodes)) + ["all"]
    controllers = list(dict.fromkeys(e["controller"] for e in episodes))
    for kind in kinds:
        for ctrl in controllers:
            sel = [e for e in episodes if e["controller"] == ctrl and (kind == "all" or e["kind"] == kind)]
            if not sel:
                continue
            ftf = [e["frames_to_focus"] if e["frames_to_focus"] is not None else math.inf for e in sel]
            lat = [e["latency_p50_ms"] for e in sel if e["latency_p50_ms"] is not None]
            lat95 = [e["latency_p95_ms"] for e in sel if e["latency_p95_ms"] is not None]
            rows.append({
                "kind": kind, "controller": ctrl, "episodes": len(sel),
                "reached": sum(math.isfinite(f) for f in ftf) / len(sel),
                "frames_to_focus_median": _quantile(ftf, 0.5),
                "frames_to_focus_p90": _quantile(ftf, 0.9),
                "final_abs_error_median_steps": float(np.median([abs(e["final_error_steps"]) for e in sel])),
                "in_focus_fraction_mean": float(np.mean([e["in_focus_fraction"] for e in sel])),
                "in_focus_tracking_mean": float(np.mean([e["in_focus_fraction_tracking"] for e in sel])),
                "steps_travelled_median": float(np.median([e["steps_travelled"] for e in sel])),
                "passed_soft_limits": sum(bool(e.get("passed_soft_limits")) for e in sel),
                "latency_p50_ms": _quantile(lat, 0.5),
                "latency_p95_ms": float(max(lat95)) if lat95 else math.nan,
            })
    return rows


def _fmt_frames(value: float) -> str:
    return "never" if not math.isfinite(value) else f"{value:.1f}".rstrip("0").rstrip(".")


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`table_rows`."""
    head = ("| scenario | controller | episodes | reached focus | frames to focus median | p90 | "
            "final abs error (steps) | frames in focus | in focus after reaching | motor steps travelled | "
            "past soft limits | processing p50 / max p95 (ms) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['controller']} | {r['episodes']} | {r['reached']:.0%} | "
            f"{_fmt_frames(r['frames_to_focus_median'])} | {_fmt_frames(r['frames_to_focus_p90'])} | "
            f"{r['final_abs_error_median_steps']:.1f} | {r['in_focus_fraction_mean']:.1%} | "
            f"{r['in_focus_tracking_mean']:.1%} | {r['steps_travelled_median']:.0f} | "
            f"{r.get('passed_soft_limits', 0)} | {r['latency_p50_ms']:.1f} / {r['latency_p95_ms']:.1f} |")
    return "\n".join(lines)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def command_line(args: argparse.Namespace) -> str:
    """Return the full command that reproduces this run (every option explicit)."""
    parts = ["celegans-autofocus", "bench"]
    if args.model is not None:
        parts += ["--model", str(args.model)]
    parts += ["--episodes", str(args.episodes), "--kinds", *args.kinds, "--seed", str(args.seed), "--look", args.look,
              "--duration-s", f"{args.duration_s:g}", "--fps", f"{args.fps:g}",
              "--max-start-offset-steps", f"{args.max_start_offset_steps:g}",
              "--drift-steps-per-s", f"{args.drift_steps_per_s:g}",
              "--slow-drift-steps-per-s", f"{args.slow_drift_steps_per_s:g}",
              "--motor-speed-steps-per-s", f"{args.motor_speed_steps_per_s:g}",
              "--latency-s", f"{args.latency_s:g}", "--fov", str(args.fov), "--render-px", str(args.render_px),
              "--threads", str(args.threads),
              "--controllers", *args.controllers, "--measures", *args.measures,
              "--hybrid-models", *args.hybrid_models, "--wrong-offset-steps", f"{args.wrong_offset_steps:g}",
              "--hybrid-bias-steps", f"{args.hybrid_bias_steps:g}", "--hybrid-session", args.hybrid_session,
              "--search-fov", str(args.search_fov)]
    if args.hybrid_min_peak_contrast is not None:
        parts += ["--hybrid-min-peak-contrast", f"{args.hybrid_min_peak_contrast:g}"]
    for opt in ("summary_json", "plot", "markdown"):
        if getattr(args, opt) is not None:
            parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    return " ".join(shlex.quote(p) for p in parts)


def _markdown(args: argparse.Namespace, model: str, table: str, wall_s: float, view: str) -> str:
    from ..core.closed_loop import FOCUS_HOLD_FRAMES
    from ..core.focus import DEFAULT_MEASURE

    cmd = command_line(args)
    peak_note = ("" if args.hybrid_min_peak_contrast is None
                 else f" but min_peak_contrast {args.hybrid_min_peak_contrast:g}")
    return "\n".join([
        "# Closed-loop benchmark: CNN one-shot, classical search and hybrid autofocus", "",
        "Command:", "", "```", cmd, "```", "",
        f"Model: {model}; simulator look: {args.look}; camera view: {view}; "
        f"{args.episodes} episodes per scenario kind, "
        f"{args.duration_s:g} s at {args.fps:g} fps, seed {args.seed}; motor {args.motor_speed_steps_per_s:g} "
        f"steps/s; command latency {args.latency_s * 1e3:g} ms (simulated). Search: SearchAutofocus "
        f"(SearchConfig defaults) on {', '.join(args.measures)}. Hybrid: HybridAutofocus (HybridConfig "
        f"defaults{peak_note}; prior bias of the ONNX model {args.hybrid_bias_steps:g} steps; session: "
        f"{args.hybrid_session}) with the models "
        f"{', '.join(args.hybrid_models)} (constant = {args.wrong_offset_steps:g} steps; "
        f"random_sign = the true |offset| with a random sign; oracle = the true offset), measure "
        f"{DEFAULT_MEASURE} on the CNN's view. Drift: {args.slow_drift_steps_per_s:g} steps/s (drift2), "
        f"{args.drift_steps_per_s:g} steps/s (drift, switch).", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"wall time {wall_s:.0f} s.", "",
        table, "",
        f"Frames to focus: index of the first frame that starts {FOCUS_HOLD_FRAMES} consecutive frames with "
        "|error| <= 8 steps (frame 0 = the first frame; 'never' = not within the episode). "
        "Final abs error: median over episodes of |best - lens| at the last frame. Frames in focus: share "
        "of all frames with |error| <= 8 steps; 'after reaching' counts from frames to focus on. "
        "Past soft limits: episodes in which the lens left the default soft limits (+-1000 steps). "
        "Processing: predictor (cnn) or focus measure (search) time per frame on this CPU.", ""])


def _controllers(args: argparse.Namespace, predictor, render_px: int, fov: int | None) -> list:
    """(row name, make(scenario) -> (controller, frame source)) for every controller of the run.

    The hybrid sees the CNN's view and measures ``DEFAULT_MEASURE`` on that same frame; its stand-in
    models read the truth from a TruthTap on the frame source.
    """
    from ..core.closed_loop import CnnLoop, HybridLoop, OpticsFrames, SearchLoop
    from ..core.fake_models import ConstantModel, OracleModel, RandomSignModel, TruthTap
    from ..core.optics import look_config

    config = look_config(args.look)
    out = []
    if "cnn" in args.controllers:
        out.append(("cnn", lambda sc: (CnnLoop(predictor), OpticsFrames(sc, render_px, fov_px=fov, config=config))))
    if "search" in args.controllers:
        for measure in args.measures:
            out.append((f"search/{measure}", lambda sc, m=measure: (
                SearchLoop(measure=m), OpticsFrames(sc, args.search_fov, fov_px=args.search_fov, config=config))))
    if "hybrid" in args.controllers:
        from ..core.hybrid import HybridConfig

        models = {"bundled": lambda tap, sc: predictor,
                  "constant": lambda tap, sc: ConstantModel(args.wrong_offset_steps),
                  "random_sign": lambda tap, sc: RandomSignModel(tap, seed=sc.seed),
                  "oracle": lambda tap, sc: OracleModel(tap)}

        peak = {} if args.hybrid_min_peak_contrast is None else {"min_peak_contrast": args.hybrid_min_peak_contrast}
        last: dict[str, HybridLoop] = {}  # per model: the loop of its previous episode
        learnt: dict[str, list[float]] = {}  # per model: the bias each earlier episode learnt (a session)

        def make(sc, which):
            tap = TruthTap(OpticsFrames(sc, render_px, fov_px=fov, config=config))
            prior = args.hybrid_bias_steps if which == "bundled" else 0.0
            if args.hybrid_session == "carry":
                if which in last and last[which].ctrl.learnt_bias_steps is not None:
                    learnt.setdefault(which, []).append(last[which].ctrl.learnt_bias_steps)
                if learnt.get(which):
                    prior = float(np.median(learnt[which]))
            last[which] = HybridLoop(models[which](tap, sc), HybridConfig(cnn_bias_steps=prior, **peak))
            return last[which], tap

        for which in args.hybrid_models:
            out.append((f"hybrid/{which}", lambda sc, w=which: make(sc, w)))
    return out


#: Controllers whose example episode the figure shows (the others are in the table and the box plots).
EXAMPLE_CONTROLLERS = ("cnn", "search/detail_skewness", "hybrid/bundled", "hybrid/constant")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.closed_loop import FOCUS_HOLD_FRAMES, run_episode
    from ..core.control import ControlConfig
    from ..core.focus import get_measure
    from ..core.optics import look_config
    from ..core.predictor import FocusPredictor, ModelError, default_model_path

    if args.episodes < 1:
        print(f"error: --episodes must be >= 1, got {args.episodes}", file=sys.stderr)
        return 2
    try:
        for measure in args.measures:
            get_measure(measure)
        if args.search_fov < 16:
            raise ValueError(f"--search-fov must be at least 16 px, got {args.search_fov}")
        if not (math.isfinite(args.latency_s) and args.latency_s >= 0):
            raise ValueError(f"--latency-s must be a finite number of seconds >= 0, got {args.latency_s}")
        if not (math.isfinite(args.wrong_offset_steps) and math.isfinite(args.hybrid_bias_steps)):
            raise ValueError(f"--wrong-offset-steps and --hybrid-bias-steps must be finite, got "
                             f"{args.wrong_offset_steps} and {args.hybrid_bias_steps}")
        look_config(args.look)  # a look from --config bypasses the choices
        if args.hybrid_min_peak_contrast is not None:
            from ..core.hybrid import HybridConfig

            HybridConfig(min_peak_contrast=args.hybrid_min_peak_contrast)  # its own checks
        predictor = None
        model_name = "-"
        if "cnn" in args.controllers or ("hybrid" in args.controllers and "bundled" in args.hybrid_models):
            path = args.model if args.model is not None else default_model_path()
            predictor = FocusPredictor(path, providers="auto", intra_op_threads=args.threads)
            meta = predictor.metadata
            shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
            model_name = (f"{shown} (arch {meta.get('arch')}, input {predictor.spec.input_px} px, "
                          f"view {meta.get('input_view')}, data hash {meta.get('train_data_hash')})")
        render_px, fov = _view(args, predictor)
        scenarios = _scenarios(args)
    except (ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    view = "full frame" if fov is None else f"{fov} px crop around the target worm"
    view += (f", rendered {min(render_px, fov or render_px)} px wide by the optics fast path, then the model's "
             f"preprocessing; search: native-resolution {args.search_fov} px ROI on the target worm; hybrid: "
             "the CNN's view, the measure on the same frame")
    controllers = _controllers(args, predictor, render_px, fov)
    soft = ControlConfig()  # every controller runs with the same default soft limits
    episodes, examples = [], {}
    t0 = time.perf_counter()
    bar = tqdm(total=len(scenarios) * len(controllers), desc="bench", unit="episode", file=sys.stderr)
    for sc in scenarios:
        for ctrl_name, make in controllers:
            ctrl, frames = make(sc)
            trace = run_episode(sc, ctrl, frames)
            summary = trace.summary()
            lens = np.asarray(trace.lens_z)
            episodes.append({"scenario": sc.name, "kind": sc.name.rsplit("-", 1)[0], "controller": ctrl_name,
                             "start_offset_steps": sc.start_offset_steps, **summary,
                             "lens_min_steps": float(lens.min()), "lens_max_steps": float(lens.max()),
                             "passed_soft_limits": bool(lens.min() < soft.soft_min_steps
                                                        or lens.max() > soft.soft_max_steps),
                             "fallbacks": (sum(c.mode.value == "search" for c in ctrl.ctrl.changes)
                                           if hasattr(ctrl, "ctrl") else None)})
            if sc.name.startswith("switch") and ctrl_name in EXAMPLE_CONTROLLERS and ctrl_name not in examples:
                examples[ctrl_name] = {"t_s": trace.t_s, "true_best_z": trace.true_best_z,
                                       "lens_z": trace.lens_z, "scenario": sc.name,
                                       "predicted_best_z": (trace.predicted_best_z
                                                            if ctrl_name in ("cnn", "hybrid/bundled") else None)}
            bar.update()
    bar.close()
    wall_s = time.perf_counter() - t0

    rows = table_rows(episodes)
    table = format_table(rows)
    print(table)
    print(f"frames to focus = first of {FOCUS_HOLD_FRAMES} consecutive frames with |error| <= 8 steps; "
          f"{len(scenarios)} scenarios, wall time {wall_s:.0f} s", file=sys.stderr)
    try:
        if args.summary_json is not None:
            args.summary_json.parent.mkdir(parents=True, exist_ok=True)
            args.summary_json.write_text(json.dumps(_json_safe(
                {"model": model_name, "view": view, "hold_frames": FOCUS_HOLD_FRAMES, "wall_s": wall_s,
                 "scenarios": [s.to_dict() for s in scenarios], "episodes": episodes, "table": rows}), indent=1))
        if args.plot is not None:
            from ..plots import plot_bench
            plot_bench(episodes, examples, args.plot, title="CNN one-shot vs classical search vs hybrid")
        if args.markdown is not None:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(_markdown(args, model_name, table, wall_s, view))
    except OSError as exc:
        print(f"error: cannot write output: {exc}", file=sys.stderr)
        return 1
    return 0
