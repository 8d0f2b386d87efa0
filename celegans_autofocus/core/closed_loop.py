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

"""Closed-loop focus simulation: drifting best plane, motor kinematics, episode metrics.

No ROS and no torch. Everything is a deterministic function of simulated time (seconds)
and seeds, so the CNN controller and the classical search run on identical scenes and
identical best-plane trajectories.

Sign convention: ``error_steps = best_z_steps - lens_z_steps`` is the signed number of motor
steps to move to reach focus (= ``offset_steps``). A frame is in focus when
``|error_steps| <= core.metrics.IN_FOCUS_STEPS``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from . import optics
from .control import ControlConfig, FocusController, SearchAutofocus, SearchConfig
from .detection import crop_window
from .focus import DEFAULT_MEASURE, get_measure
from .hybrid import HybridAutofocus, HybridConfig
from .images import ImageError
from .metrics import IN_FOCUS_STEPS, error_summary
from .predictor import FocusPredictor, NonFiniteOutputError

#: "Reached focus" = the first of this many consecutive in-focus frames, so that a lens passing
#: through focus does not count; the one definition for ``sim``, ``bench`` and the tests.
FOCUS_HOLD_FRAMES = 3


class FocusDrift:
    """Best-plane trajectory ``best_z_steps(t_s)`` in motor steps.

    Components: ``start_best_z_steps`` + linear plate-tilt drift (``drift_steps_per_s``,
    the worm crawling across a tilted plate) + an optional seeded random walk
    (``random_walk_steps_per_sqrt_s``, on a grid of ``grid_s``) + a jump of
    ``switch_jumps_steps[i]`` at ``switch_times_s[i]`` (the tracker switched to another
    worm lying at another height). Any query order gives the same values.
    """

    def __init__(self, start_best_z_steps: float = 0.0, drift_steps_per_s: float = 0.0,
                 random_walk_steps_per_sqrt_s: float = 0.0,
                 switch_times_s: Sequence[float] = (), switch_jumps_steps: Sequence[float] = (),
                 seed: int = 0, grid_s: float = 0.05) -> None:
        if len(switch_times_s) != len(switch_jumps_steps):
            raise ValueError(f"switch_times_s ({len(switch_times_s)}) and switch_jumps_steps "
                             f"({len(switch_jumps_steps)}) must have the same length")
        if grid_s <= 0:
            raise ValueError(f"grid_s must be > 0, got {grid_s}")
        values = [start_best_z_steps, drift_steps_per_s, random_walk_steps_per_sqrt_s,
                  *switch_times_s, *switch_jumps_steps]
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f"FocusDrift parameters must be finite, got {values}")
        self.start_best_z_steps = float(start_best_z_steps)
        self.drift_steps_per_s = float(drift_steps_per_s)
        self.random_walk_steps_per_sqrt_s = float(random_walk_steps_per_sqrt_s)
        order = np.argsort(np.asarray(switch_times_s, dtype=float), kind="stable")
        self.switch_times_s = tuple(float(switch_times_s[i]) for i in order)
        self.switch_jumps_steps = tuple(float(switch_jumps_steps[i]) for i in order)
        self.grid_s = float(grid_s)
        self._rng = np.random.default_rng(seed)
        self._walk = np.zeros(1)  # walk value at t = k * grid_s, extended on demand

    def _walk_at(self, t_s: float) -> float:
        if self.random_walk_steps_per_sqrt_s == 0.0 or t_s <= 0.0:
            return 0.0
        k = t_s / self.grid_s
        need = int(math.ceil(k)) + 1
        if need > self._walk.size:
            sigma = self.random_walk_steps_per_sqrt_s * math.sqrt(self.grid_s)
            steps = self._rng.normal(0.0, sigma, need - self._walk.size)
            self._walk = np.concatenate([self._walk, self._walk[-1] + np.cumsum(steps)])
        lo = int(math.floor(k))
        frac = k - lo
        return float(self._walk[lo] * (1.0 - frac) + self._walk[min(lo + 1, self._walk.size - 1)] * frac)

    def target_index(self, t_s: float) -> int:
        """How many worm switches happened at or before ``t_s`` (0 = the first target)."""
        return sum(1 for ts in self.switch_times_s if ts <= t_s)

    def best_z_steps(self, t_s: float) -> float:
        """Lens position (steps) at which the current target is in best focus at ``t_s``."""
        jumps = sum(j for ts, j in zip(self.switch_times_s, self.switch_jumps_steps) if ts <= t_s)
        return (self.start_best_z_steps + self.drift_steps_per_s * max(t_s, 0.0)
                + self._walk_at(t_s) + jumps)


@dataclass(frozen=True)
class Scenario:
    """One closed-loop episode: scene seed, start offset, best-plane motion, camera, motor."""

    name: str
    seed: int
    start_offset_steps: float  # best_z - lens_z at t = 0 (the first error)
    duration_s: float = 8.0
    fps: float = 15.0
    drift_steps_per_s: float = 0.0
    random_walk_steps_per_sqrt_s: float = 0.0
    switch_times_s: tuple[float, ...] = ()
    switch_jumps_steps: tuple[float, ...] = ()
    n_worms: int = 3
    motor_speed_steps_per_s: float = 2000.0
    processing_latency_s: float = 0.03  # frame stamp -> motor command, in simulated time

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.fps <= 0:
            raise ValueError(f"scenario {self.name}: duration_s and fps must be > 0")
        if self.motor_speed_steps_per_s <= 0:
            raise ValueError(f"scenario {self.name}: motor_speed_steps_per_s must be > 0")
        if len(self.switch_times_s) != len(self.switch_jumps_steps):
            raise ValueError(f"scenario {self.name}: one jump per switch time is needed")

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * self.fps))

    def drift(self, lens_start_z_steps: float = 0.0) -> FocusDrift:
        """Return the best-plane trajectory, with the lens starting at ``lens_start_z_steps``."""
        return FocusDrift(lens_start_z_steps + self.start_offset_steps, self.drift_steps_per_s,
                          self.random_walk_steps_per_sqrt_s, self.switch_times_s,
                          self.switch_jumps_steps, seed=self.seed + 7919)

    def to_dict(self) -> dict:
        return asdict(self)


#: Scenario kinds of the benchmark, in table order.
SCENARIO_KINDS = ("start", "drift", "switch")


def make_scenarios(n_per_kind: int, seed: int = 0, kinds: Sequence[str] = SCENARIO_KINDS,
                   max_start_offset_steps: float = 200.0, duration_s: float = 8.0,
                   fps: float = 15.0, drift_steps_per_s: float = 4.0,
                   switch_jump_steps: tuple[float, float] = (40.0, 120.0), **common) -> list[Scenario]:
    """Seeded benchmark scenarios, ``n_per_kind`` of each kind.

    - ``start``: static best plane, start offset uniform in +-``max_start_offset_steps``.
    - ``drift``: as ``start`` plus plate-tilt drift of +-``drift_steps_per_s`` and a small
      random walk (0.5 steps/sqrt(s)).
    - ``switch``: as ``drift`` plus a switch to another worm at 40% and 70% of the episode,
      each a jump of uniform |``switch_jump_steps``| with random sign.
    ``common`` is passed to every :class:`Scenario` (e.g. ``motor_speed_steps_per_s``).
    """
    unknown = set(kinds) - set(SCENARIO_KINDS)
    if unknown:
        raise ValueError(f"unknown scenario kinds {sorted(unknown)}; choose from {SCENARIO_KINDS}")
    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        for i in range(n_per_kind):
            ep_seed = int(rng.integers(0, 2**31 - 1))
            start = float(np.round(rng.uniform(-max_start_offset_steps, max_start_offset_steps)))
            drift = float(rng.choice([-1.0, 1.0]) * drift_steps_per_s) if kind != "start" else 0.0
            walk = 0.5 if kind != "start" else 0.0
            times: tuple[float, ...] = ()
            jumps: tuple[float, ...] = ()
            if kind == "switch":
                times = (round(0.4 * duration_s, 3), round(0.7 * duration_s, 3))
                jumps = tuple(float(np.round(rng.choice([-1.0, 1.0]) * rng.uniform(*switch_jump_steps)))
                              for _ in times)
            out.append(Scenario(name=f"{kind}-{i}", seed=ep_seed, start_offset_steps=start,
                                duration_s=duration_s, fps=fps, drift_steps_per_s=drift,
                                random_walk_steps_per_sqrt_s=walk, switch_times_s=times,
                                switch_jumps_steps=jumps, **common))
    return out


@dataclass
class MotorSim:
    """Focus motor kinematics: constant-speed moves, then a settle time. Pure function of time.

    ``command(target_steps, t_s)`` starts a move from wherever the lens is at ``t_s``
    (a new command pre-empts the move in progress). ``position_steps(t_s)`` interpolates;
    ``settled_at_s`` is when the last move ends plus the settle time.
    """

    position0_steps: float = 0.0
    speed_steps_per_s: float = 2000.0
    settle_s: float = 0.02
    travelled_steps: float = 0.0
    _from_steps: float = field(init=False, default=0.0)
    _to_steps: float = field(init=False, default=0.0)
    _t0_s: float = field(init=False, default=0.0)
    _t1_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._from_steps = self._to_steps = float(self.position0_steps)
        self._t0_s = self._t1_s = -math.inf

    @property
    def target_steps(self) -> float:
        return self._to_steps

    @property
    def move_end_s(self) -> float:
        return self._t1_s

    @property
    def settled_at_s(self) -> float:
        return self._t1_s + self.settle_s

    def moving(self, t_s: float) -> bool:
        return t_s < self._t1_s

    def position_steps(self, t_s: float) -> float:
        if t_s >= self._t1_s:
            return self._to_steps
        if t_s <= self._t0_s:
            return self._from_steps
        frac = (t_s - self._t0_s) / (self._t1_s - self._t0_s)
        return self._from_steps + frac * (self._to_steps - self._from_steps)

    def command(self, target_steps: float, t_s: float) -> None:
        if not math.isfinite(target_steps):
            raise ValueError(f"motor target must be finite, got {target_steps}")
        start = self.position_steps(t_s)
        self.travelled_steps += abs(target_steps - start) - abs(self._to_steps - start)  # pre-empted rest
        self._from_steps, self._to_steps = start, float(target_steps)
        self._t0_s = t_s
        self._t1_s = t_s + abs(target_steps - start) / self.speed_steps_per_s


def percentile(values: Sequence[float], q: float) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.percentile(vals, q)) if vals else None


def summarize_episode(error_steps: Sequence[float], *, latency_ms: Sequence[float] | None = None,
                      steps_travelled: float | None = None, lens_z_steps: Sequence[float] | None = None,
                      in_focus_steps: float = IN_FOCUS_STEPS, hold_frames: int = FOCUS_HOLD_FRAMES) -> dict:
    """Metrics of one episode from the per-frame focus error (``best_z - lens_z`` at each frame).

    Keys: those of :func:`core.metrics.error_summary` over all frames (no sign accuracy: nothing
    predicts here), then ``frames_to_focus`` (index of the first frame that starts a run of
    ``hold_frames`` frames with ``|error| <= in_focus_steps``; None if never), ``final_error_steps``
    (signed, last frame), ``in_focus_fraction_tracking`` (frames from ``frames_to_focus`` on),
    ``steady_abs_error_steps`` (median |error| over those frames), ``latency_p50_ms`` /
    ``latency_p95_ms`` (None without latencies), ``steps_travelled`` (given, else the sum of
    |frame-to-frame lens moves| from ``lens_z_steps``, else None) and ``n_frames``.
    """
    err = np.asarray(error_steps, dtype=float)
    if err.ndim != 1 or err.size == 0:
        raise ValueError(f"error_steps must be a non-empty 1-D sequence, got shape {err.shape}")
    if not np.isfinite(err).all():
        raise ValueError("error_steps contains non-finite values")
    if hold_frames < 1:
        raise ValueError(f"hold_frames must be >= 1, got {hold_frames}")
    ok = np.abs(err) <= in_focus_steps
    first = None
    for i in range(err.size - hold_frames + 1):
        if ok[i:i + hold_frames].all():
            first = i
            break
    if steps_travelled is None and lens_z_steps is not None:
        steps_travelled = float(np.abs(np.diff(np.asarray(lens_z_steps, dtype=float))).sum())
    tracking = ok[first:] if first is not None else np.zeros(0, dtype=bool)
    return {
        **error_summary(err, in_focus_steps=in_focus_steps),
        "frames_to_focus": first,
        "final_error_steps": float(err[-1]),
        "in_focus_fraction_tracking": float(tracking.mean()) if tracking.size else 0.0,
        "steady_abs_error_steps": float(np.median(np.abs(err[first:]))) if first is not None else None,
        "latency_p50_ms": percentile(latency_ms or [], 50),
        "latency_p95_ms": percentile(latency_ms or [], 95),
        "steps_travelled": None if steps_travelled is None else float(steps_travelled),
        "n_frames": int(err.size),
    }


# ---------------------------------------------------------------- episode runner

class FrameSource(Protocol):
    """Camera of the simulation.

    ``frame`` returns the frame seen when the lens must move ``offset_steps`` to focus the worm tracked as
    target number ``target_index`` (0, 1, ... after each switch).
    """

    def frame(self, offset_steps: float, target_index: int) -> np.ndarray: ...


class OpticsFrames:
    """Frames from the physical simulator's fast path (core.optics.StackRenderer), one scene per scenario.

    The scene has ``config``'s look (callers name it, e.g. ``look_config(SIMULATOR_LOOK)``) and is seeded by the
    scenario. A frame is the full frame rendered ``render_px`` wide (aspect kept), or, with ``fov_px``, a square crop
    of that side centred on the target worm (worm ``target_index % n_worms``) rendered at ``min(render_px, fov_px)``
    (``render_px >= fov_px`` = native resolution). The model's own preprocessing then brings either to its input size.
    """

    def __init__(self, scenario: Scenario, render_px: int, fov_px: int | None = None, *,
                 config: optics.OpticsConfig) -> None:
        self.config = config
        self.scene = optics.make_scene(np.random.default_rng(scenario.seed), self.config, scenario.n_worms)
        self.render_px = int(render_px)
        self.fov_px = fov_px
        self.seed = scenario.seed
        self._renderers: dict[int | None, optics.StackRenderer] = {}

    def _view(self, target_index: int) -> tuple[int | None, tuple | None, tuple[int, int]]:
        frame_hw = (int(self.config.frame_height_px), int(self.config.frame_width_px))
        if self.fov_px is None or not self.scene.worms:
            return None, None, (max(8, round(self.render_px * frame_hw[0] / frame_hw[1])), self.render_px)
        key = target_index % len(self.scene.worms)
        window = crop_window(self.scene.worms[key].centroid_px, int(self.fov_px), frame_hw)
        return key, window, (min(self.render_px, window[3]), min(self.render_px, window[2]))

    def frame(self, offset_steps: float, target_index: int) -> np.ndarray:
        key, window, out_shape = self._view(target_index)
        if key not in self._renderers:
            self._renderers[key] = optics.StackRenderer(
                self.scene, self.config, out_shape, window_px=window, seed=self.seed + (key or 0))
        return self._renderers[key].frame(float(offset_steps))


@dataclass(frozen=True)
class Step:
    """What a loop controller did with one frame.

    Its prediction (steps to focus, or None for the search), its processing time and the control law's reason
    (``core.control.Reason`` value).
    """

    predicted_offset_steps: float | None
    latency_ms: float
    reason: str


class CnnLoop:
    """One-shot CNN autofocus: FocusPredictor on each settled frame -> core.control.FocusController."""

    name = "cnn"

    def __init__(self, predictor: FocusPredictor, config: ControlConfig | None = None) -> None:
        self.predictor = predictor
        self.law = FocusController(config if config is not None else ControlConfig())
        self.settle_s = self.law.config.settle_s

    def on_frame(self, gray: np.ndarray, stamp_s: float, now_s: float, motor: MotorSim) -> Step:
        t0 = time.perf_counter()
        try:
            offset = float(self.predictor.predict(gray))
        except (ImageError, NonFiniteOutputError):
            offset = math.nan  # the law holds (NON_FINITE): the motor never moves on garbage
        latency_ms = (time.perf_counter() - t0) * 1e3
        position = motor.position_steps(now_s)
        decision = self.law.update(offset, stamp_s, now_s, position)
        if decision.moves:
            motor.command(round(position) + decision.move_steps, now_s)
            self.law.record_move(motor.move_end_s)
        return Step(offset, latency_ms, decision.reason.value)

    def on_target_switch(self) -> None:
        """Do nothing: the law needs no notice, the next prediction already sees the new worm."""


class SearchLoop:
    """Classical autofocus: core.control.SearchAutofocus on a focus measure (default Vollath F5).

    It re-searches when the measure drops; a switch to another worm restarts a full search, as a tracker does
    when it picks a new target.
    """

    name = "search"

    def __init__(self, config: SearchConfig | None = None, measure: str = "vollath_f5",
                 settle_s: float = ControlConfig.settle_s) -> None:
        self.search = SearchAutofocus(config if config is not None else SearchConfig())
        self.measure = get_measure(measure)
        self.measure_name = measure
        self.settle_s = settle_s

    def on_frame(self, gray: np.ndarray, stamp_s: float, now_s: float, motor: MotorSim) -> Step:
        t0 = time.perf_counter()
        value = self.measure(gray)
        latency_ms = (time.perf_counter() - t0) * 1e3
        z = motor.position_steps(stamp_s)
        decision = self.search.update(z, value, stamp_s)
        if decision.moves and decision.target_steps is not None and decision.target_steps != motor.target_steps:
            motor.command(float(decision.target_steps), now_s)
        return Step(None, latency_ms, decision.reason.value)

    def on_target_switch(self) -> None:
        self.search.restart()


class FocusModel(Protocol):
    """What the CNN loops need of a model: ``predict(gray) -> offset_steps`` (FocusPredictor or a stand-in).

    The hybrid also uses ``predict_with_sigma(gray) -> (offset_steps, sigma_steps or None)`` where a model has it.
    """

    def predict(self, gray: np.ndarray) -> float: ...


class HybridLoop:
    """Hybrid autofocus (core.hybrid.HybridAutofocus) in the closed-loop runner.

    Each settled frame gives it the model's prediction (with its sigma where the model reports one) and the focus
    measure (``DEFAULT_MEASURE``, the one labels are made with) of that frame; a switch to another worm is told to
    the controller, as a tracker does when it picks a new target.
    """

    name = "hybrid"

    def __init__(self, model: FocusModel, config: HybridConfig | None = None, measure: str = DEFAULT_MEASURE) -> None:
        self.model = model
        self.ctrl = HybridAutofocus(config if config is not None else HybridConfig())
        self.measure = get_measure(measure)
        self.settle_s = self.ctrl.settle_s
        self._now_s = 0.0

    def on_frame(self, gray: np.ndarray, stamp_s: float, now_s: float, motor: MotorSim) -> Step:
        t0 = time.perf_counter()
        sigma = None
        try:
            if hasattr(self.model, "predict_with_sigma"):  # a model that reports its uncertainty (or None)
                offset, sigma = self.model.predict_with_sigma(gray)
            else:
                offset = float(self.model.predict(gray))
        except (ImageError, NonFiniteOutputError):
            offset = math.nan  # the controller holds or falls back to the search: never moves on garbage
        value = self.measure(gray)
        latency_ms = (time.perf_counter() - t0) * 1e3
        position = motor.position_steps(now_s)
        decision = self.ctrl.update(offset, sigma, value, stamp_s, now_s, position)
        if decision.moves:
            motor.command(round(position) + decision.move_steps, now_s)
            self.ctrl.record_move(motor.move_end_s)
        self._now_s = now_s
        return Step(offset, latency_ms, f"{decision.mode.value}:{decision.reason.value}")

    def on_target_switch(self) -> None:
        self.ctrl.target_changed(self._now_s)


@dataclass
class EpisodeTrace:
    """Per-frame record of one episode (frame i at ``t_s[i]``); NaN = no prediction on that frame."""

    scenario: Scenario
    controller: str
    t_s: list[float] = field(default_factory=list)
    true_best_z: list[float] = field(default_factory=list)
    lens_z: list[float] = field(default_factory=list)
    predicted_offset: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    steps_travelled: float = 0.0

    @property
    def error_steps(self) -> np.ndarray:
        return np.asarray(self.true_best_z) - np.asarray(self.lens_z)

    @property
    def predicted_best_z(self) -> np.ndarray:
        return np.asarray(self.lens_z) + np.asarray(self.predicted_offset)

    def summary(self, hold_frames: int = FOCUS_HOLD_FRAMES) -> dict:
        return summarize_episode(self.error_steps, latency_ms=self.latency_ms,
                                 steps_travelled=self.steps_travelled, hold_frames=hold_frames)


@dataclass(frozen=True)
class FrameRecord:
    """One simulated frame, for recorders (e.g. a rosbag of the episode)."""

    index: int
    t_s: float
    gray: np.ndarray | None  # None when the controller skipped the frame (lens not settled)
    lens_z_steps: float
    true_offset_steps: float
    predicted_offset_steps: float | None


def run_episode(scenario: Scenario, controller: "CnnLoop | SearchLoop | HybridLoop", frames: FrameSource,
                on_frame: Callable[[FrameRecord], None] | None = None) -> EpisodeTrace:
    """Simulate one episode frame by frame; deterministic for a given scenario and controller.

    The camera takes frame i at ``t = i / fps``; the lens is where the motor is at that instant
    (moves run at ``motor_speed_steps_per_s``). A frame taken before the lens settled (end of
    move + the controller's settle time) is skipped, as both control laws would ignore it, and
    is not rendered. Otherwise it is rendered at ``offset = best_z - lens_z`` and handed to the
    controller, whose command starts ``processing_latency_s`` after the frame's stamp.
    The lens starts at 0 steps; the best plane at ``start_offset_steps``.
    """
    drift = scenario.drift(0.0)
    motor = MotorSim(0.0, scenario.motor_speed_steps_per_s, controller.settle_s)
    trace = EpisodeTrace(scenario, controller.name)
    target_index = 0
    for i in range(scenario.n_frames):
        t_s = i / scenario.fps
        new_target = drift.target_index(t_s)
        if new_target != target_index:
            target_index = new_target
            controller.on_target_switch()
        best = drift.best_z_steps(t_s)
        lens = motor.position_steps(t_s)
        settled = t_s >= motor.settled_at_s
        gray = frames.frame(best - lens, target_index) if settled else None
        step = controller.on_frame(gray, t_s, t_s + scenario.processing_latency_s, motor) if settled else None
        trace.t_s.append(t_s)
        trace.true_best_z.append(best)
        trace.lens_z.append(lens)
        pred = step.predicted_offset_steps if step is not None else None
        trace.predicted_offset.append(math.nan if pred is None else pred)
        trace.latency_ms.append(step.latency_ms if step is not None else math.nan)
        trace.reasons.append(step.reason if step is not None else "unsettled")
        if on_frame is not None:
            on_frame(FrameRecord(i, t_s, gray, lens, best - lens, pred))
    trace.steps_travelled = motor.travelled_steps
    return trace
