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

"""Focus control: the one-shot law for CNN predictions, and the classical search baseline.

Pure logic on numbers and times in seconds (one clock for image stamps and ``now_s``, e.g.
ROS time): no sleeping, no ROS, no hardware. Both controllers return a :class:`Decision`
whose ``move_steps`` is the relative move to command (0 = hold) and whose ``reason`` says why,
so nodes and logs can explain every motion and every refusal.

Sign: ``offset_steps`` is the signed number of motor steps to reach focus (positive = to larger z).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Generator

import numpy as np

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


class Reason(str, Enum):
    """Why a controller moved or held."""

    MOVE = "move"                  # FocusController: acting on the median prediction
    IN_FOCUS = "in_focus"          # |median| within the deadband
    COLLECTING = "collecting"      # fewer than median_window fresh predictions and not far from focus
    AT_LIMIT = "at_limit"          # the move would leave the soft limits: clamped to nothing
    UNSETTLED = "unsettled"        # frame taken before the end of the last move + settle time
    MOVING = "moving"              # a move was commanded and its end is not known yet
    STALE = "stale"                # prediction too old (or from the future)
    NON_FINITE = "non_finite"      # NaN/Inf prediction, measure, position or time
    IMPLAUSIBLE = "implausible"    # a prediction beyond any focus travel (MAX_OFFSET_STEPS)
    DISABLED = "disabled"
    SEARCHING = "searching"        # SearchAutofocus: go to the next z of the search
    NOT_AT_TARGET = "not_at_target"  # SearchAutofocus: frame not taken at the requested z
    CONVERGED = "converged"        # SearchAutofocus: at the best z found; watching for a drop


@dataclass(frozen=True)
class Decision:
    """What to do after one frame. ``move_steps`` is relative to the current position; 0 means hold."""

    move_steps: int
    reason: Reason
    detail: str = ""
    median_steps: float | None = None   # FocusController: the median the decision used
    target_steps: int | None = None     # absolute z the move leads to
    at_limit: bool = False              # the move was shortened by a soft limit

    @property
    def moves(self) -> bool:
        return self.move_steps != 0


#: a prediction farther than this (25 mm) is garbage, held like NaN: it exceeds a focus drive's travel, and the models
#: answer within a few hundred steps
MAX_OFFSET_STEPS = 5000.0


def plausible(offset_steps: float) -> bool:
    """Return whether a finite prediction is a distance a focus drive could have to go (``MAX_OFFSET_STEPS``)."""
    return abs(offset_steps) <= MAX_OFFSET_STEPS


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) for v in values)


def frame_hold(stamp_s: float, now_s: float, move_end_s: float, stale_after_s: float,
               settle_s: float) -> tuple[str, str] | None:
    """Check whether a frame may be acted on: (reason value, detail) to hold, else None.

    The rule every controller applies first: finite times, not older (or newer) than ``stale_after_s``,
    no move awaiting ``record_move`` (``move_end_s`` infinite), stamped after the move ended + ``settle_s``.
    The reason values are those of :class:`Reason` (and of ``core.hybrid.HybridReason``).
    """
    if not _finite(stamp_s, now_s):
        return "non_finite", f"non-finite time: stamp_s={stamp_s!r}, now_s={now_s!r}"
    age_s = now_s - stamp_s
    if abs(age_s) > stale_after_s:
        return "stale", f"frame age {age_s:.3f} s exceeds {stale_after_s} s"
    if move_end_s == math.inf:
        return "moving", "a move was commanded; waiting for record_move(end_s)"
    ready_s = move_end_s + settle_s
    if stamp_s < ready_s:
        return "unsettled", f"frame at {stamp_s:.3f} s precedes settle at {ready_s:.3f} s"
    return None


def _check_limits(soft_min_steps: int, soft_max_steps: int) -> None:
    if not soft_min_steps < soft_max_steps:
        raise ValueError(f"soft_min_steps ({soft_min_steps}) must be < soft_max_steps ({soft_max_steps})")


class _Config:
    """from_dict / to_dict shared by the config dataclasses; unknown keys are an error that names them."""

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    def _check_finite(self) -> None:
        """Every field is a finite number (bools refused)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not _finite(value):
                raise ValueError(f"{type(self).__name__}.{f.name} must be a finite number, got {value!r}")

    def _check_integers(self, names: tuple[str, ...], minimum: int = 1) -> None:
        """Each named field is a whole number >= ``minimum``."""
        for name in names:
            value = getattr(self, name)
            if int(value) != value or value < minimum:
                raise ValueError(f"{type(self).__name__}.{name} must be an integer >= {minimum}, got {value}")


@dataclass(frozen=True)
class ControlConfig(_Config):
    """Parameters of the one-shot control law (docs/architecture.md). Units are in the names.

    ``act_now_steps``: before ``median_window`` fresh predictions have arrived, the law already
    acts (on their median) when every one of them is at least this far from focus on the same
    side, so a large error costs one frame, not K; a full window then outvotes single outliers.
    """

    gain: float = 1.0
    deadband_steps: float = 8.0
    max_move_steps: int = 200
    median_window: int = 3
    act_now_steps: float = 24.0
    stale_after_s: float = 1.0
    settle_s: float = 0.05
    soft_min_steps: int = -1000
    soft_max_steps: int = 1000

    def __post_init__(self) -> None:
        self._check_finite()
        if not 0.0 < self.gain <= 2.0:
            raise ValueError(f"ControlConfig.gain must be in (0, 2], got {self.gain}")
        if self.deadband_steps < 0:
            raise ValueError(f"ControlConfig.deadband_steps must be >= 0, got {self.deadband_steps}")
        self._check_integers(("max_move_steps", "median_window"))
        if self.act_now_steps < self.deadband_steps:
            raise ValueError(f"ControlConfig.act_now_steps ({self.act_now_steps}) must be >= "
                             f"deadband_steps ({self.deadband_steps})")
        if self.stale_after_s <= 0 or self.settle_s < 0:
            raise ValueError(f"ControlConfig.stale_after_s must be > 0 and settle_s >= 0, "
                             f"got {self.stale_after_s} and {self.settle_s}")
        _check_limits(self.soft_min_steps, self.soft_max_steps)


class FocusController:
    """The one-shot law: settle check, median of K, deadband, gain, clamp, soft limits, watchdog.

    Use: ``d = ctrl.update(offset_steps, stamp_s, now_s, position_steps)``; when ``d.moves``,
    command the motor, then call ``ctrl.record_move(end_s)`` with the time the lens will be still
    (start + the stepper's estimated duration). Until then every prediction is held as MOVING,
    so a caller that forgets cannot make the controller act on frames taken mid-move. Call
    ``record_move`` for external moves too (homing, manual jogs).
    """

    def __init__(self, config: ControlConfig = ControlConfig(), enabled: bool = True) -> None:
        self.config = config
        self._enabled = enabled
        self._window: deque[tuple[float, float]] = deque(maxlen=config.median_window)  # (stamp_s, offset)
        self._move_end_s = -math.inf
        self._last_fresh_s: float | None = None
        self.counts: dict[str, int] = {r.value: 0 for r in Reason}

    @property
    def enabled(self) -> bool:
        return self._enabled

    def reconfigure(self, config: ControlConfig) -> None:
        """Switch to a new law (e.g. a run-time parameter change).

        The prediction window starts afresh; the settle time of a move in progress still applies.
        """
        self.config = config
        self._window = deque(maxlen=config.median_window)

    def enable(self, on: bool) -> None:
        """Turn the law on or off; either way the prediction window starts afresh."""
        self._enabled = bool(on)
        self._window.clear()

    @property
    def move_end_s(self) -> float:
        """Return when the last recorded move ends (-inf before any)."""
        return self._move_end_s

    def record_move(self, end_s: float) -> None:
        """Record that the lens moves until ``end_s``; frames stamped before ``end_s + settle_s`` are ignored."""
        if not _finite(end_s):
            raise ValueError(f"record_move: end_s must be finite, got {end_s!r}")
        self._move_end_s = float(end_s)
        self._window.clear()

    def is_stale(self, now_s: float) -> bool:
        """Watchdog: True when no fresh prediction arrived for ``stale_after_s`` (or never)."""
        ready_s = self._move_end_s + self.config.settle_s
        last = max(self._last_fresh_s if self._last_fresh_s is not None else -math.inf, ready_s)
        return not math.isfinite(last) or now_s - last > self.config.stale_after_s

    def _hold(self, reason: Reason, detail: str, median: float | None = None) -> Decision:
        self.counts[reason.value] += 1
        return Decision(0, reason, detail, median_steps=median)

    def update(self, offset_steps: float, stamp_s: float, now_s: float, position_steps: float) -> Decision:
        """One prediction (from the frame stamped ``stamp_s``) at time ``now_s``, motor at ``position_steps``."""
        cfg = self.config
        if not self._enabled:
            return self._hold(Reason.DISABLED, "focus control is disabled")
        if not _finite(offset_steps, position_steps):
            self._window.clear()
            return self._hold(Reason.NON_FINITE, f"non-finite input: offset_steps={offset_steps!r}, "
                                                 f"position_steps={position_steps!r}")
        if not plausible(offset_steps):
            self._window.clear()
            return self._hold(Reason.IMPLAUSIBLE, f"offset_steps={offset_steps:.4g} is beyond any focus travel "
                                                  f"(+-{MAX_OFFSET_STEPS:g} steps)")
        held = frame_hold(stamp_s, now_s, self._move_end_s, cfg.stale_after_s, cfg.settle_s)
        if held is not None:
            return self._hold(Reason(held[0]), held[1])

        self._last_fresh_s = stamp_s
        while self._window and now_s - self._window[0][0] > cfg.stale_after_s:
            self._window.popleft()
        self._window.append((stamp_s, float(offset_steps)))
        offsets = [o for _, o in self._window]
        median = float(np.median(offsets))
        n = len(offsets)
        if abs(median) <= cfg.deadband_steps:
            return self._hold(Reason.IN_FOCUS, f"|median| {abs(median):.1f} <= deadband {cfg.deadband_steps}", median)
        agree_far = all(o >= cfg.act_now_steps for o in offsets) or all(o <= -cfg.act_now_steps for o in offsets)
        if n < cfg.median_window and not agree_far:
            return self._hold(Reason.COLLECTING, f"{n}/{cfg.median_window} fresh predictions, not all beyond "
                                                 f"act_now {cfg.act_now_steps} on one side", median)

        move = int(round(float(np.clip(cfg.gain * median, -cfg.max_move_steps, cfg.max_move_steps))))
        position = int(round(position_steps))
        target = min(max(position + move, cfg.soft_min_steps), cfg.soft_max_steps)
        at_limit = target != position + move
        move = target - position
        if move == 0:
            return self._hold(Reason.AT_LIMIT if at_limit else Reason.IN_FOCUS,
                              f"median {median:.1f} gives no move within soft limits "
                              f"[{cfg.soft_min_steps}, {cfg.soft_max_steps}] from {position}", median)
        self._move_end_s = math.inf
        self._window.clear()
        self.counts[Reason.MOVE.value] += 1
        detail = f"median {median:.1f} of {n} -> move {move:+d} to {target}"
        if at_limit:
            detail += f" (clamped at soft limit [{cfg.soft_min_steps}, {cfg.soft_max_steps}])"
        return Decision(move, Reason.MOVE, detail, median_steps=median, target_steps=target, at_limit=at_limit)


@dataclass(frozen=True)
class SearchConfig(_Config):
    """Parameters of the classical search autofocus. Units are in the names.

    A search sweeps ``range_steps`` centred on the start z every ``coarse_step_steps``, then runs a
    golden-section search in the bracket around the coarse maximum until it is narrower than
    ``tolerance_steps``, then goes to the best z measured. Once converged it watches the measure
    and searches again (over ``refocus_range_steps``) when it drops below ``refocus_drop`` times
    the best value; ``refocus_drop = 0`` makes it one-shot.
    """

    range_steps: int = 400
    coarse_step_steps: int = 25
    tolerance_steps: float = 2.0
    refocus_drop: float = 0.6
    refocus_range_steps: int = 100
    soft_min_steps: int = -1000
    soft_max_steps: int = 1000

    def __post_init__(self) -> None:
        self._check_finite()
        self._check_integers(("range_steps", "coarse_step_steps", "refocus_range_steps"))
        if self.coarse_step_steps > self.range_steps:
            raise ValueError(f"SearchConfig.coarse_step_steps ({self.coarse_step_steps}) must be <= "
                             f"range_steps ({self.range_steps})")
        if self.tolerance_steps < 1:
            raise ValueError(f"SearchConfig.tolerance_steps must be >= 1, got {self.tolerance_steps}")
        if not 0.0 <= self.refocus_drop < 1.0:
            raise ValueError(f"SearchConfig.refocus_drop must be in [0, 1), got {self.refocus_drop}")
        _check_limits(self.soft_min_steps, self.soft_max_steps)

    def frames_per_search(self, range_steps: int | None = None) -> int:
        """Upper bound on frames one search costs: coarse sweep + golden section + the final frame at the best.

        Defaults: 17 coarse + at most 9 golden-section + 1 = 27 frames (fewer when rounded
        golden points repeat z values already measured, which cost no frame).
        """
        width = self.range_steps if range_steps is None else range_steps
        coarse = width // self.coarse_step_steps + 1
        bracket = 2 * self.coarse_step_steps
        golden = 2 + max(0, math.ceil(math.log(bracket / self.tolerance_steps) / math.log(1 / GOLDEN)))
        return coarse + golden + 1


class SearchAutofocus:
    """Classical iterative autofocus on a focus measure, as Micro-Manager's OughtaFocus and OpenFlexure do.

    Drive it one frame at a time: ``d = search.update(z_steps, measure_value, t_s)`` where
    ``z_steps`` is where the frame was taken (at rest) and ``measure_value`` its focus measure
    (larger = sharper, e.g. Vollath F5); move by ``d.move_steps`` (to ``d.target_steps``). A frame
    not taken at the requested z is ignored (NOT_AT_TARGET), so frames shot mid-move never count.
    The first frame starts a search centred on its z. Frame cost: :meth:`SearchConfig.frames_per_search`.
    The coarse sweep starts at its low end, or at the end a hint points to (:meth:`restart`): the same frames,
    in another order.
    """

    def __init__(self, config: SearchConfig = SearchConfig(), enabled: bool = True) -> None:
        self.config = config
        self._enabled = enabled
        self._plan: Generator[int, float, int] | None = None
        self._target: int | None = None
        self._best_value: float | None = None
        self._toward_steps = 0.0
        self.searches = 0
        self.frames_searching = 0
        self.history: list[tuple[float, int, float]] = []  # (t_s, z_steps, measure_value) of used frames

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def converged(self) -> bool:
        return self._plan is None and self._target is not None

    def enable(self, on: bool) -> None:
        """Turn the search on or off; turning it on starts a fresh search at the next frame."""
        self._enabled = bool(on)
        self.restart()

    def restart(self, toward_steps: float = 0.0) -> None:
        """Forget the current search; the next frame starts a new one centred on its z.

        ``toward_steps``: where focus probably is, relative to that z (e.g. an unconfident CNN's answer): its sign
        picks the end the coarse sweep starts at (0: the low end). Only the order of the sweep changes.
        """
        self._plan, self._target, self._best_value = None, None, None
        self._toward_steps = float(toward_steps) if math.isfinite(toward_steps) else 0.0

    def _clamp(self, z: float) -> int:
        return int(min(max(round(z), self.config.soft_min_steps), self.config.soft_max_steps))

    def _search(self, center: int, width: int, first: tuple[int, float],
                downward: bool) -> Generator[int, float, tuple[int, float]]:
        """Yield z targets, receive their measures; return (best z, its measure). Measured z cost no frame.

        ``downward``: the coarse sweep runs from the high end.
        """
        measured: dict[int, float] = {first[0]: first[1]}

        def measure(z: int) -> Generator[int, float, float]:
            if z not in measured:
                measured[z] = yield z
            return measured[z]

        step = self.config.coarse_step_steps
        lo, hi = self._clamp(center - width / 2), self._clamp(center + width / 2)
        grid = list(range(lo, hi + 1, step))
        for z in reversed(grid) if downward else grid:
            yield from measure(z)
        i = int(np.argmax([measured[z] for z in grid]))
        a, b = self._clamp(grid[i] - step), self._clamp(grid[i] + step)
        c, d = self._clamp(b - GOLDEN * (b - a)), self._clamp(a + GOLDEN * (b - a))
        fc, fd = (yield from measure(c)), (yield from measure(d))
        while b - a > self.config.tolerance_steps:
            if fc >= fd:
                b, d, fd = d, c, fc
                c = self._clamp(b - GOLDEN * (b - a))
                fc = yield from measure(c)
            else:
                a, c, fc = c, d, fd
                d = self._clamp(a + GOLDEN * (b - a))
                fd = yield from measure(d)
        best = max(measured, key=measured.get)
        return best, measured[best]

    def _advance(self, value: float | None) -> None:
        """Feed the measure at the current target to the plan; on completion go to the best z."""
        try:
            self._target = self._plan.send(value)
        except StopIteration as done:
            self._plan = None
            self._target, self._best_value = done.value

    def update(self, z_steps: float, measure_value: float, t_s: float) -> Decision:
        """One frame taken at ``z_steps`` with focus measure ``measure_value`` at time ``t_s``."""
        if not self._enabled:
            return Decision(0, Reason.DISABLED, "search autofocus is disabled")
        if not _finite(z_steps, t_s):
            return Decision(0, Reason.NON_FINITE, f"non-finite z_steps={z_steps!r} or t_s={t_s!r}")
        z = int(round(z_steps))
        if self._target is not None and z != self._target:
            return Decision(self._target - z, Reason.NOT_AT_TARGET,
                            f"frame at z={z}, waiting for z={self._target}", target_steps=self._target)
        if not _finite(measure_value):
            return Decision(0, Reason.NON_FINITE, f"non-finite focus measure {measure_value!r} at z={z}; "
                                                  "measuring again", target_steps=z)
        value = float(measure_value)
        self.history.append((float(t_s), z, value))
        if self._target is None:
            self._start(z, value, self.config.range_steps)
        elif self._plan is not None:
            self._advance(value)
        elif self._best_value > 0 and value < self.config.refocus_drop * self._best_value:
            self._start(z, value, self.config.refocus_range_steps)
        else:
            return Decision(0, Reason.CONVERGED, f"holding best z={z}, measure {value:.4g} "
                                                 f"(best {self._best_value:.4g})", target_steps=z)
        self.frames_searching += 1
        what = "going to best" if self._plan is None else f"search {self.searches}: next"
        return Decision(self._target - z, Reason.SEARCHING, f"{what} z={self._target}", target_steps=self._target)

    def _start(self, z: int, value: float, width: int) -> None:
        self.searches += 1
        self._plan = self._search(z, width, (z, value), downward=self._toward_steps > 0)
        self._toward_steps = 0.0  # a hint is for the first search after it
        self._advance(None)
