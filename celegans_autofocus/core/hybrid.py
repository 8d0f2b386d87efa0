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

"""Hybrid autofocus: jump on the CNN, verify with the focus measure, refine on the measure, fall back to search.

Pure logic on numbers and times in seconds (one clock for image stamps and ``now_s``), like
:mod:`core.control`. Per frame the caller gives the CNN's prediction (``offset_steps``, signed
steps to focus, optional ``sigma_steps``), the focus measure of the same crop (the measure the
labels are made with, larger = sharper), the frame's stamp, the time and the motor position; it
gets a :class:`HybridDecision` with a relative move, the mode and the reason, and, when the mode
changed, a :class:`ModeChange` to log and publish (e.g. in /diagnostics).

Modes (:class:`Mode`):

- ``acquire``: jump by the CNN's prediction (minus its bias near focus, learnt per worm from the frames
  the measure verified: the frames of refines that found a peak) once the
  last ``consistency_frames`` predicted best planes (position + offset) agree. The first frame
  after a jump verifies it: the prediction there must show progress (at most ``consistency_steps
  + consistency_fraction * |jump|``; with the model's sigma, its plane must agree with the plane
  jumped to), and a lens that was near focus must not see a clearly worse measure; otherwise the
  jump is undone, its plane refuted and a strike counted against the model. A prediction that is
  not confident but whose sign is clear (|offset| > 2 sigma) gets a cautious step of |offset| - sigma,
  verified like a jump; ``unsure_frames`` finite predictions that are not confident and of an unclear
  sign (a settled lens seeing the same view gets the same answer again), or ``unusable_frames`` unusable
  ones (non-finite too: a camera glitch passes), before a usable one fall back to the search.
- ``refine``: near focus (|offset| <= ``refine_window_steps``) a measure-guided hill climb in
  ``probe_steps`` steps from where the CNN points, ending with a 3-point parabola; the peak must
  stand ``min_peak_contrast`` above its neighbours, or the refine failed (a strike).
- ``track``: in focus. Holds while the measure stays near its reference (a sharp worm is not
  disturbed); follows the drift rate of a Kalman filter on the best plane
  (:class:`core.best_plane.BestPlaneTracker`, fed with measure peaks, verified CNN planes and, while the
  measure holds, every confident plane of a trusted CNN that agrees with the estimate), and moves to the
  estimate once it is sure the plane left the lens; re-refines when the measure drops; jumps again when it
  dropped and the CNN confidently says focus is far.
- ``search``: fallback after ``max_strikes`` strikes (failed verifications, refuted planes, a refine
  that finds no peak, a CNN that disagrees with the measure's peak), oscillating predictions, or
  repeated unusable predictions: :class:`core.control.SearchAutofocus` on the measure, its coarse sweep
  starting at the end where the last predictions (unconfident ones too) put the plane. Once it
  converged (and a refine found the peak sharp), ``track`` goes on with the measure alone
  (:attr:`HybridAutofocus.cnn_trusted` False: no jumps; a failed refine or a worm switch searches
  again) until the CNN agrees with the measure's focus for ``consistency_frames`` frames. During
  the search it returns to ``acquire`` when the CNN points at the same plane from two lens
  positions (a plane that moves with the lens, as a constant answer does, does not count), once per search
  of a worm: when that return fails too, the next search runs to its end (a model that is consistently wrong
  between two lens positions would otherwise interrupt every search).

The lens never leaves [soft_min_steps, soft_max_steps] and never moves on non-finite input.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Generator

import numpy as np

from .best_plane import BestPlaneTracker
from .control import SearchAutofocus, SearchConfig, _check_limits, _Config, _finite, frame_hold, plausible


class Mode(str, Enum):
    ACQUIRE = "acquire"
    REFINE = "refine"
    TRACK = "track"
    SEARCH = "search"


class HybridReason(str, Enum):
    """Why the hybrid controller moved, held, or changed mode."""

    # holds
    DISABLED = "disabled"
    NON_FINITE = "non_finite"          # NaN/Inf measure, position, time, or (in acquire) prediction
    IMPLAUSIBLE = "implausible"        # acquire: a prediction beyond any focus travel (control.MAX_OFFSET_STEPS)
    STALE = "stale"                    # frame too old (or from the future)
    MOVING = "moving"                  # a move was commanded and record_move(end_s) not called yet
    UNSETTLED = "unsettled"            # frame taken before the end of the last move + settle time
    AT_LIMIT = "at_limit"              # the move would leave the soft limits
    COLLECTING = "collecting"          # acquire: fewer than K consistent predictions
    IN_FOCUS = "in_focus"              # track: measure near its reference
    CONVERGED = "converged"            # search: at the best z found, the CNN does not agree (yet)
    # moves
    JUMP = "jump"                      # acquire: move by the CNN's prediction
    STEP = "step"                      # acquire: a cautious step towards a clear but unconfident prediction
    UNDO = "undo"                      # verification failed: back to where the jump started
    PROBE = "probe"                    # refine: measure the next z
    REFINED = "refined"                # refine: go to the peak found
    FOLLOW_DRIFT = "follow_drift"      # track: move with the best-plane estimate
    SEARCHING = "searching"            # search: next z of the search
    # strikes and mode changes
    START = "start"                    # first frame
    TARGET_CHANGED = "target_changed"  # the tracker switched worms
    PLANE_PREDICTED = "plane_predicted"  # after a switch: refine around the plane the plate tilt predicts
    NEAR_FOCUS = "near_focus"          # acquire -> refine: the CNN says focus is within the refine window
    FOCUSED = "focused"                # refine -> track: peak found
    MEASURE_DROP = "measure_drop"      # track -> refine: the measure fell below its reference
    FAR_PREDICTION = "far_prediction"  # track -> acquire: measure dropped and the CNN says focus is far
    VERIFY_WORSE = "verify_worse"      # strike: the jump made a focused image clearly worse
    VERIFY_INCONSISTENT = "verify_inconsistent"  # strike: after the jump the CNN points elsewhere
    REFUTED = "refuted"                # strike: the CNN points again at a plane already refuted
    REFINE_FAILED = "refine_failed"    # strike: no measure peak within refine_span_steps
    DISAGREES = "disagrees"            # strike: the CNN's plane is far from the measure's peak
    OSCILLATING = "oscillating"        # fallback: predictions inconsistent for oscillation_frames frames
    NO_PREDICTIONS = "no_predictions"  # fallback: unsure (unsure_frames) or unusable (unusable_frames) predictions
    CNN_AGREES = "cnn_agrees"          # the CNN is trusted again: it agrees with the measure's focus (search or
    #                                    track -> track) or points at one plane from two lens positions (-> acquire)
    SEARCH_CONVERGED = "search_converged"  # search -> refine (is the peak sharp?), then track on the measure alone


@dataclass(frozen=True)
class ModeChange:
    """A mode change, to log and publish: from ``previous`` to ``mode`` because of ``reason``."""

    previous: Mode
    mode: Mode
    reason: HybridReason
    detail: str
    t_s: float


@dataclass(frozen=True)
class HybridDecision:
    """What to do after one frame. ``move_steps`` is relative to the current position; 0 means hold."""

    move_steps: int
    mode: Mode                          # the mode after this frame
    reason: HybridReason
    detail: str = ""
    target_steps: int | None = None     # absolute z the move leads to
    best_z_steps: float | None = None   # the fused best-plane estimate at now_s (None before the first)
    change: ModeChange | None = None    # set when this frame changed the mode
    at_limit: bool = False              # the move was shortened by a soft limit

    @property
    def moves(self) -> bool:
        return self.move_steps != 0


def peak_contrast(f_lo: float, f_c: float, f_hi: float) -> float:
    """Return how far a measure peak ``f_c`` stands above the mean of its two neighbours (the refine's peak test)."""
    return f_c - 0.5 * (f_lo + f_hi)


@dataclass(frozen=True)
class HybridConfig(_Config):
    """Parameters of the hybrid controller. Units are in the names.

    - ``consistency_frames`` (K): a jump needs the last K settled predictions of the best plane
      (position + offset) to agree within ``max(consistency_steps, consistency_fraction * |offset|)``.
      A jump is verified when the prediction after it is at most ``consistency_steps +
      consistency_fraction * |jump|`` (progress); that prediction may then jump again at once. With
      K = 1 (the default: one frame per jump) that verification is the consistency check, across
      two lens positions; K >= 2 also asks for agreement before the first jump (noisy models).
      A model that reports its sigma replaces the relative part: two planes agree within
      ``max(consistency_steps, 2 sqrt(sigma1^2 + sigma2^2))`` (the window, the verification of a jump
      against the plane jumped to, and the check against refuted planes).
    - ``max_sigma_steps``: a prediction whose model-reported sigma exceeds this is not confident: no jump;
      a cautious step of ``|offset| - sigma`` when its sign is clear (``|offset| > 2 sigma``), else a hold.
    - ``cnn_bias_steps``: subtracted from every prediction until a bias is learnt (a prior for the model's bias
      near focus, e.g. what a previous session learnt: :attr:`HybridAutofocus.learnt_bias_steps`).
    - ``cnn_sigma_steps``: a CNN plane's error for the best-plane filter when the model gives none (a verified
      jump's plane; in track, a trusted CNN's plane that agrees with the estimate).
    - ``refine_window_steps``: a prediction at most this far from focus is refined on the measure, not jumped.
    - ``probe_steps``: refine step; ``refine_span_steps``: the farthest a refine climbs from its start.
    - ``measure_noise``: measure differences below this are noise.
    - ``min_peak_contrast``: a refined peak must stand this far (measure units) above the mean of its
      two neighbours at +-probe_steps, else it is no focus (a refine failure). detail_skewness on the
      simulator, probe 6 steps: 0.2-0.6 at focus, < 0.05 at the broad side lobes of defocused images; a soft
      lens's broad peak stands less high, so 0.03 (0.1 before 2026-12-02 failed the refines on the real_adult look
      and cost more than a search; the default look's bench is the same at both: benchmarks/bench_real_adult.md).
    - ``bias_frames``: the CNN's bias near focus is learnt online, per worm, as the median of the last
      ``bias_frames`` residuals (raw prediction minus the offset to the measure's peak) on the frames of a
      refine that found a peak (within ``refine_window_steps`` of it; not track's frames, whose best-plane
      estimate the CNN feeds); residuals beyond ``disagree_steps`` are a wrong model, not a bias.
      With ``min_bias_frames`` residuals it replaces the prior: ``cnn_bias_steps`` for the first worm,
      the median of the biases learnt on the previous worms after a switch. 0 keeps ``cnn_bias_steps``.
    - ``drop_fraction``: the measure "dropped" (re-refine in track; a jump from focus "clearly worse")
      when it fell by more than this fraction of |reference| (+ ``measure_noise``).
    - ``disagree_steps``: the CNN disagrees with the measure when its plane is this far from the
      measure's peak; ``disagree_frames`` such frames in track count one strike.
    - ``max_strikes``: strikes against the model before falling back to the search.
    - ``oscillation_frames``: consecutive inconsistent prediction windows before falling back.
    - ``unusable_frames``: unusable predictions in acquire (non-finite, or not confident with an unclear sign)
      before a usable one, then fall back: garbage never costs more than a search.
    - ``unsure_frames``: of those, finite but unsure ones (not confident, sign unclear) before falling back:
      fewer than ``unusable_frames``, as a settled lens repeats such an answer while a NaN glitch passes.
    - ``follow_steps``: track moves to the best-plane estimate once it is this far from the lens, and either
      drifting away (a significant rate) or more than two of its sigmas away. While the measure holds, a
      trusted CNN's confident plane that agrees with the estimate (``_tolerance``) is fused each frame, with
      the model's sigma or ``cnn_sigma_steps``.
    - ``refine_sigma_steps``: a refined peak's error for the best-plane filter.
    - ``drift_accel_sigma``: the filter's process noise, steps/s per sqrt(s).
    - ``max_drift_steps_per_s``: the filter's drift-rate cap.
    - ``max_move_steps``: the largest jump; ``stale_after_s``: frames older than this (or from the
      future) are ignored; ``settle_s``: frames stamped before the end of a move + this are ignored;
      ``soft_min_steps`` / ``soft_max_steps``: no move ever leaves them (the search uses the same).
    """

    consistency_frames: int = 1
    consistency_steps: float = 16.0
    consistency_fraction: float = 0.5
    max_sigma_steps: float = 24.0
    cnn_bias_steps: float = 0.0
    cnn_sigma_steps: float = 16.0
    refine_window_steps: float = 16.0
    probe_steps: int = 6
    refine_span_steps: int = 36
    measure_noise: float = 0.02
    min_peak_contrast: float = 0.03
    bias_frames: int = 32
    min_bias_frames: int = 3
    drop_fraction: float = 0.15
    disagree_steps: float = 32.0
    disagree_frames: int = 8
    max_strikes: int = 2
    oscillation_frames: int = 4
    unusable_frames: int = 8
    unsure_frames: int = 3
    follow_steps: float = 2.0
    refine_sigma_steps: float = 2.0
    drift_accel_sigma: float = 0.5
    max_drift_steps_per_s: float = 20.0
    max_move_steps: int = 300
    stale_after_s: float = 1.0
    settle_s: float = 0.05
    soft_min_steps: int = -1000
    soft_max_steps: int = 1000

    def __post_init__(self) -> None:
        self._check_finite()
        name = type(self).__name__
        self._check_integers(("consistency_frames", "probe_steps", "refine_span_steps", "disagree_frames",
                              "max_strikes", "oscillation_frames", "unusable_frames", "unsure_frames",
                              "max_move_steps"))
        for key in ("consistency_steps", "max_sigma_steps", "cnn_sigma_steps", "refine_sigma_steps",
                    "max_drift_steps_per_s", "stale_after_s", "follow_steps"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{name}.{key} must be > 0, got {getattr(self, key)}")
        for key in ("consistency_fraction", "refine_window_steps", "measure_noise", "min_peak_contrast",
                    "disagree_steps", "drift_accel_sigma", "settle_s"):
            if getattr(self, key) < 0:
                raise ValueError(f"{name}.{key} must be >= 0, got {getattr(self, key)}")
        self._check_integers(("bias_frames", "min_bias_frames"), minimum=0)
        if not 0.0 < self.drop_fraction < 1.0:
            raise ValueError(f"{name}.drop_fraction must be in (0, 1), got {self.drop_fraction}")
        if self.refine_span_steps < self.probe_steps:
            raise ValueError(f"{name}.refine_span_steps ({self.refine_span_steps}) must be >= "
                             f"probe_steps ({self.probe_steps})")
        _check_limits(self.soft_min_steps, self.soft_max_steps)


@dataclass
class _Jump:
    """A jump (or cautious step) awaiting verification at the first settled frame after it."""

    from_z: int  # where an undo goes back to: the jump's start, a chain of cautious steps' first start
    from_measure: float
    from_in_focus: bool
    best_z: float
    move_steps: int
    sigma_steps: float | None = None  # the model's sigma of best_z (None: the model reports none)


class HybridAutofocus:
    """The hybrid controller.

    Per settled frame::

        d = ctrl.update(offset_steps, sigma_steps, measure_value, stamp_s, now_s, position_steps)
        if d.moves: command the motor by d.move_steps, then ctrl.record_move(end_s)
        if d.change: log/publish d.change

    ``offset_steps`` may be None (no prediction for this frame) and ``sigma_steps`` None (the model
    reports no uncertainty). Until ``record_move`` is called after a move every frame is held
    (MOVING); frames stamped before ``end_s + settle_s`` are held (UNSETTLED). Call
    :meth:`target_changed` when the tracker switches worms.
    """

    def __init__(self, config: HybridConfig = HybridConfig(), search_config: SearchConfig | None = None,
                 enabled: bool = True) -> None:
        self._enabled = enabled
        self._configure(config, search_config)
        self._move_end_s = -math.inf
        self.mode = Mode.ACQUIRE
        self.strikes = 0
        self.changes: list[ModeChange] = []
        self.counts: dict[str, int] = {r.value: 0 for r in HybridReason}
        self._started = False
        self._peaks = 0  # measure-found planes fused so far: the drift rate is followed from the second on
        self.cnn_bias_steps = config.cnn_bias_steps  # learnt online near focus, per worm (bias_frames > 0)
        self._target_biases: list[float] = []  # the bias learnt on each previous worm: the prior for the next
        self.cnn_trusted = True  # False from a fallback to the search until the CNN agrees with the measure again
        self._reset_target()

    def _configure(self, config: HybridConfig, search_config: SearchConfig | None) -> None:
        if search_config is None:
            search_config = SearchConfig(soft_min_steps=config.soft_min_steps, soft_max_steps=config.soft_max_steps)
        if (search_config.soft_min_steps, search_config.soft_max_steps) != (config.soft_min_steps,
                                                                            config.soft_max_steps):
            raise ValueError("HybridConfig and SearchConfig must have the same soft limits, got "
                             f"[{config.soft_min_steps}, {config.soft_max_steps}] and "
                             f"[{search_config.soft_min_steps}, {search_config.soft_max_steps}]")
        self.config = config
        self.search = SearchAutofocus(search_config)
        self.tracker = BestPlaneTracker(config.drift_accel_sigma, config.max_drift_steps_per_s)

    def _reset_target(self) -> None:
        """Forget everything that belongs to one worm (not the strikes, not the drift rate)."""
        # settled predictions: (stamp, z, best plane z + offset, the model's sigma or None)
        self._window: deque[tuple[float, float, float, float | None]] = deque(maxlen=self.config.consistency_frames)
        self._refuted: list[tuple[float, float | None]] = []  # refuted planes (z, the model's sigma or None)
        # a chain of cautious steps: the plane it aims at (z, sigma) and the lens z before its first step
        self._anchor: tuple[float, float, int] | None = None
        self._pending: _Jump | None = None
        self._verified = False
        self._plan: Generator[int, float, tuple[int, float] | None] | None = None
        self._plan_target: int | None = None
        self._plan_bests: list[float] = []
        self._plan_raw: list[tuple[int, float]] = []  # refine frames: (z, raw prediction), for the bias
        self._residuals: deque[float] = deque(maxlen=max(1, self.config.bias_frames))
        self._search_interrupted = False  # the CNN cut a search short, and has not found focus since
        self._measure_ref: float | None = None
        self._inconsistent = 0
        self._unusable = 0
        self._unsure = 0  # of the unusable predictions, finite ones (not confident, sign unclear)
        self._disagree = 0
        self._agree = 0
        self._sweep: tuple[int, float] | None = None  # search: the last (z, CNN plane), to see the CNN agree again
        self._hint: float | None = None  # after a switch: the new worm's plane as the plate tilt predicts it

    # ------------------------------------------------------------------ public API

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def settle_s(self) -> float:
        return self.config.settle_s

    def enable(self, on: bool) -> None:
        """Turn the controller on or off; either way it starts afresh in acquire (strikes kept)."""
        self._enabled = bool(on)
        self._reset_target()
        self.search.restart()
        self.mode = Mode.ACQUIRE

    def reconfigure(self, config: HybridConfig, search_config: SearchConfig | None = None) -> None:
        """Reconfigure (e.g. at run time): start afresh in acquire; a move's settle time still applies.

        The bias learnt so far is kept unless the prior (``cnn_bias_steps``) itself changes.
        """
        prior_changed = config.cnn_bias_steps != self.config.cnn_bias_steps
        self._configure(config, search_config)
        if prior_changed:
            self.cnn_bias_steps = config.cnn_bias_steps
            self._target_biases = []
        self._reset_target()
        self.mode = Mode.ACQUIRE

    @property
    def move_end_s(self) -> float:
        """Return when the last recorded move ends (-inf before any)."""
        return self._move_end_s

    def record_move(self, end_s: float) -> None:
        """Record that the lens moves until ``end_s``; frames stamped before ``end_s + settle_s`` are ignored."""
        if not _finite(end_s):
            raise ValueError(f"record_move: end_s must be finite, got {end_s!r}")
        self._move_end_s = float(end_s)

    def target_changed(self, t_s: float, z_hint_steps: float | None = None,
                       hint_sigma_steps: float | None = None) -> ModeChange | None:
        """Note that the tracker switched to another worm at ``t_s``: its plane is unknown, the drift rate is kept.

        The CNN's bias learnt on this worm joins the prior for the next. ``z_hint_steps`` +- ``hint_sigma_steps``:
        where the new worm's plane is expected (e.g. :class:`core.plate_tilt.PlateTilt` at its position); within
        ``refine_window_steps`` the next settled frame starts a refine around it (PLANE_PREDICTED), whatever
        the CNN says. Otherwise, in search mode the search restarts (the model is not trusted yet), else back
        to acquire.
        """
        if self.config.bias_frames > 0 and len(self._residuals) >= max(1, self.config.min_bias_frames):
            self._target_biases.append(self.cnn_bias_steps)
            self.cnn_bias_steps = float(np.median(self._target_biases))
        self._reset_target()
        hinted = z_hint_steps is not None and hint_sigma_steps is not None and \
            _finite(z_hint_steps, hint_sigma_steps) and 0 < hint_sigma_steps <= self.config.refine_window_steps
        if _finite(t_s):
            if hinted:
                self.tracker.forget_position(float(t_s), float(hint_sigma_steps), float(z_hint_steps))
            else:
                self.tracker.forget_position(float(t_s))
        self._hint = float(z_hint_steps) if hinted else None
        hint = (f"; the plate tilt puts the new one at z={z_hint_steps:.0f} +- {hint_sigma_steps:.1f}" if hinted
                else "")
        if self.mode == Mode.SEARCH:
            self.search.restart()
            return None
        if not self.cnn_trusted:
            self.search.restart()
            return self._change(Mode.SEARCH, HybridReason.TARGET_CHANGED,
                                f"the tracker switched worms; the CNN is not trusted: search{hint}", t_s)
        return self._change(Mode.ACQUIRE, HybridReason.TARGET_CHANGED, f"the tracker switched worms{hint}", t_s)

    @property
    def learnt_bias_steps(self) -> float | None:
        """Return the CNN's bias near focus learnt so far: the median over the worms it was learnt on, or None.

        A prior for a later session with the same model (``HybridConfig.cnn_bias_steps``).
        """
        learnt = list(self._target_biases)
        if self.config.bias_frames > 0 and len(self._residuals) >= max(1, self.config.min_bias_frames):
            learnt.append(self.cnn_bias_steps)
        return float(np.median(learnt)) if learnt else None

    def best_z_steps(self, t_s: float) -> float | None:
        """Return the fused best-plane estimate at ``t_s`` (None before the first measurement)."""
        return self.tracker.predict_z(t_s)

    def update(self, offset_steps: float | None, sigma_steps: float | None, measure_value: float,
               stamp_s: float, now_s: float, position_steps: float) -> HybridDecision:
        """Decide on one frame stamped ``stamp_s``, at time ``now_s``.

        Inputs: the CNN's prediction (or None), its sigma (or None), the frame's focus measure, and the motor
        position (at rest when the frame is settled).
        """
        cfg = self.config
        self._change_now: ModeChange | None = None
        if not self._enabled:
            return self._hold(HybridReason.DISABLED, "hybrid autofocus is disabled")
        if not _finite(measure_value, position_steps):
            return self._hold(HybridReason.NON_FINITE, f"non-finite input: measure_value={measure_value!r}, "
                                                       f"position_steps={position_steps!r}")
        held = frame_hold(stamp_s, now_s, self._move_end_s, cfg.stale_after_s, cfg.settle_s)
        if held is not None:
            return self._hold(HybridReason(held[0]), held[1])
        if not self._started:
            self._started = True
            self._change(Mode.ACQUIRE, HybridReason.START, "first settled frame", now_s)

        z = int(round(position_steps))
        m = float(measure_value)
        pred: float | None = None
        bad_pred = offset_steps is not None and not (
            _finite(offset_steps) and (sigma_steps is None or (_finite(sigma_steps) and sigma_steps >= 0)))
        implausible = offset_steps is not None and not bad_pred and not plausible(offset_steps)
        bad_pred = bad_pred or implausible
        if offset_steps is not None and not bad_pred:
            pred = float(offset_steps) - self.cnn_bias_steps
        sigma = float(sigma_steps) if pred is not None and sigma_steps is not None else None
        confident = pred is not None and (sigma is None or sigma <= cfg.max_sigma_steps)
        clear = pred is not None and (confident or abs(pred) > 2.0 * sigma)  # usable: confident or a clear sign
        self._sigma_now, self._confident_now, self._clear_now = sigma, confident, clear
        if clear:
            self._unusable = self._unsure = 0
        elif self.mode == Mode.ACQUIRE and (bad_pred or pred is not None):
            self._unusable += 1
            self._unsure += pred is not None
        if pred is not None:
            self._window.append((stamp_s, z, z + pred, sigma))

        if self._pending is not None:
            decision = self._verify(z, m, pred, stamp_s, now_s)
            if decision is not None:
                return decision
        if self._hint is not None:
            hint, self._hint = self._hint, None
            return self._start_refine(z, m, None, now_s, HybridReason.PLANE_PREDICTED,
                                      f"refine around z={hint:.0f}, the plane the plate tilt predicts", center=hint)
        if self.mode == Mode.SEARCH:
            return self._search_step(z, m, pred, stamp_s, now_s)
        if self.mode == Mode.TRACK:
            decision = self._track(z, m, pred, confident, now_s)
            if decision is not None:
                return decision
        if self.mode == Mode.REFINE:
            return self._refine_step(z, m, pred, now_s)
        # acquire
        if bad_pred or pred is None:
            if self._give_up():
                return self._no_predictions(z, m, stamp_s, now_s)
            what = ("prediction beyond any focus travel" if implausible
                    else "non-finite prediction" if bad_pred else "no prediction")
            return self._hold(HybridReason.IMPLAUSIBLE if implausible
                              else HybridReason.NON_FINITE if bad_pred else HybridReason.COLLECTING,
                              f"{what} (offset_steps={offset_steps!r}, sigma_steps={sigma_steps!r}); holding")
        return self._acquire(z, m, pred, confident, clear, stamp_s, now_s)

    # ------------------------------------------------------------------ modes

    def _consistent(self, now_s: float) -> tuple[bool, bool, str]:
        """(K fresh predictions, they agree, detail) over the prediction window."""
        cfg = self.config
        fresh = [w for w in self._window if now_s - w[0] <= cfg.stale_after_s]
        if len(fresh) < cfg.consistency_frames:
            return False, False, f"{len(fresh)}/{cfg.consistency_frames} fresh predictions"
        bests = [b for _, _, b, _ in fresh]
        spread = max(bests) - min(bests)
        if any(sig is None for *_, sig in fresh):
            tol = max(cfg.consistency_steps, cfg.consistency_fraction * max(abs(b - z) for _, z, b, _ in fresh))
            return True, spread <= tol, f"best-plane spread {spread:.1f} (tolerance {tol:.1f}) over {len(fresh)}"
        # with the model's sigmas every pair must agree; report the pair closest to disagreeing
        pairs = [(abs(b1 - b2), self._tolerance(0.0, s1, s2)) for i, (_, _, b1, s1) in enumerate(fresh)
                 for _, _, b2, s2 in fresh[i + 1:]] or [(0.0, cfg.consistency_steps)]
        diff, tol = max(pairs, key=lambda pair: pair[0] - pair[1])
        return True, diff <= tol, (f"best-plane spread {spread:.1f}, worst pair {diff:.1f} (tolerance {tol:.1f} "
                                   f"from the model's sigmas) over {len(fresh)}")

    def _tolerance(self, fixed_steps: float, sigma_a: float | None, sigma_b: float | None) -> float:
        """Return how far two best-plane estimates with these sigmas may differ and still agree.

        With the model's sigmas for both: ``max(consistency_steps, 2 sqrt(sigma_a^2 + sigma_b^2))``, a two-sigma
        test of their difference that replaces the relative part of the tolerance (``consistency_fraction``, a
        stand-in for an error that grows with the distance to focus); else ``fixed_steps``, the tolerance for
        models that report no uncertainty.
        """
        if sigma_a is None or sigma_b is None:
            return fixed_steps
        return max(self.config.consistency_steps, 2.0 * math.hypot(sigma_a, sigma_b))

    def _refuted_match(self, best: float, sigma: float | None, fixed_steps: float) -> float | None:
        """Return the refuted plane that ``best`` +- ``sigma`` agrees with (``_tolerance``), or None."""
        return next((r for r, r_sigma in self._refuted
                     if abs(r - best) <= self._tolerance(fixed_steps, sigma, r_sigma)), None)

    def _give_up(self) -> bool:
        """Return whether the unusable predictions since the last usable one call for the search."""
        return self._unusable >= self.config.unusable_frames or self._unsure >= self.config.unsure_frames

    def _no_predictions(self, z: int, m: float, stamp_s: float, now_s: float) -> HybridDecision:
        self._pending = None  # a jump that cannot be verified stays where it is: the search starts there
        return self._fallback(HybridReason.NO_PREDICTIONS, f"{self._unusable} unusable predictions since the last "
                                                           f"usable one, {self._unsure} of them finite but unsure "
                                                           f"(not confident, sign unclear)",
                              z, m, None, stamp_s, now_s)

    def _acquire(self, z: int, m: float, pred: float, confident: bool, clear: bool, stamp_s: float,
                 now_s: float) -> HybridDecision:
        """Jump to a confident prediction's plane; step cautiously towards a clear but unconfident one.

        An unconfident prediction (sigma above ``max_sigma_steps``) whose sign is clear (``|offset| > 2 sigma``)
        gets a step of ``|offset| - sigma``, to the one-sigma bound of the plane on the lens's side: at least
        sigma, so real progress, and past the plane only when it lies more than one sigma short of the estimate
        (16% for a Gaussian error); a model whose sigma grows with the distance to focus is then more confident
        at the next frame. The step is verified like a jump, against the plane the chain of steps aims at
        (:meth:`_verify`): a constant answer, whose plane moves with the lens, is refuted once the lens passed
        that plane's two-sigma bound, and the chain is undone to where it started, so the search starts there.
        An unclear prediction holds; ``unsure_frames`` of them fall back to the search (:meth:`_give_up`).
        """
        cfg = self.config
        sigma = self._sigma_now
        if abs(pred) <= cfg.refine_window_steps:
            return self._start_refine(z, m, pred, now_s, HybridReason.NEAR_FOCUS,
                                      f"CNN offset {pred:+.1f} within the refine window {cfg.refine_window_steps:g}")
        if not clear:
            self._verified = False
            if self._give_up():
                return self._no_predictions(z, m, stamp_s, now_s)
            return self._hold(HybridReason.COLLECTING, f"prediction {pred:+.1f} +- {sigma:.1f} not confident (sigma "
                                                       f"above {cfg.max_sigma_steps:g}), its sign unclear")
        full, agree, detail = self._consistent(now_s)
        if self._verified:
            full, agree, detail = True, True, "verified by the last jump"
        self._verified = False
        here = [b for _, zz, b, _ in self._window if zz == z]
        best = float(np.median(here)) if here else z + pred
        refuted = self._refuted_match(best, sigma, max(cfg.consistency_steps,
                                                       cfg.consistency_fraction * abs(best - z)))
        if refuted is not None:  # no need to wait for K frames: this plane was tried and failed
            self._window.clear()
            return self._strike(HybridReason.REFUTED, f"the CNN points again at z={best:.0f}, refuted before "
                                                      f"(z={refuted:.0f})", z, m, pred, stamp_s, now_s)
        if not full:
            return self._hold(HybridReason.COLLECTING, detail)
        if not agree:
            self._inconsistent += 1
            if self._inconsistent >= cfg.oscillation_frames:
                return self._fallback(HybridReason.OSCILLATING, f"{self._inconsistent} inconsistent windows: {detail}",
                                      z, m, pred, stamp_s, now_s)
            return self._hold(HybridReason.COLLECTING, f"inconsistent: {detail}")
        self._inconsistent = 0
        if confident:
            self._anchor = None
            aim, aim_sigma, offset = best, sigma, best - z
            reason, what = HybridReason.JUMP, f"jump to the CNN's plane z={best:.0f}"
        else:  # a cautious step; a chain of them is verified against the plane its first step aimed at
            aim, aim_sigma, origin = self._anchor if self._anchor is not None else (best, sigma, z)
            offset = math.copysign(max(0.0, abs(best - z) - sigma), best - z)
            reason, what = HybridReason.STEP, (f"step {offset:+.0f} towards the CNN's plane z={best:.0f} +- "
                                               f"{sigma:.0f} (not confident)")
        move = int(round(float(np.clip(offset, -cfg.max_move_steps, cfg.max_move_steps))))
        decision = self._move(z, z + move, reason, f"{detail}; {what}", now_s)
        if decision.moves:
            ref = self._measure_ref  # this worm's last peak measure, if any: was the lens still near focus?
            in_focus = ref is not None and m >= ref - 2.0 * cfg.drop_fraction * abs(ref) - cfg.measure_noise
            if confident:
                self._pending = _Jump(z, m, in_focus, aim, decision.move_steps, aim_sigma)
            else:  # a refuted chain is undone as a whole: back to where its first step started
                self._pending = _Jump(origin, m, in_focus, aim, decision.move_steps, aim_sigma)
                self._anchor = (aim, aim_sigma, origin)
        return decision

    def _verify(self, z: int, m: float, pred: float | None, stamp_s: float, now_s: float) -> HybridDecision | None:
        """Judge the first settled frame after a jump (or a cautious step).

        Undo the jump when the image got clearly worse or the CNN now points elsewhere. Without the model's sigma
        the prediction must show progress: at most ``consistency_steps + consistency_fraction * |jump|``. With it,
        the plane after the jump must agree with the plane jumped to (:meth:`_tolerance`): a jump that left the
        lens short of the plane, on the same side, with the rest of the way within the two estimates' sigmas, is
        progress (a model that regresses to its mean far from focus says so with a large sigma), and a plane that
        moves with the lens is refuted once it leaves them. Return None when the jump is confirmed (or cannot be
        judged on this frame); frames without a usable prediction fall back to the search (:meth:`_give_up`).
        """
        cfg = self.config
        jump = self._pending
        if jump.from_in_focus and m < self._drop_level(jump.from_measure):
            return self._undo(jump, z, HybridReason.VERIFY_WORSE,
                              f"measure {m:.3g} after the jump, {jump.from_measure:.3g} in focus before", now_s)
        if pred is None:
            if self._give_up():
                return self._no_predictions(z, m, stamp_s, now_s)
            return self._hold(HybridReason.COLLECTING, "no prediction to verify the jump on; holding")
        self._pending = None
        if jump.sigma_steps is not None and self._sigma_now is not None:
            tol = self._tolerance(0.0, jump.sigma_steps, self._sigma_now)
            if abs(z + pred - jump.best_z) > tol:
                return self._undo(jump, z, HybridReason.VERIFY_INCONSISTENT,
                                  f"after the move of {jump.move_steps:+d} steps to z={z} the CNN says {pred:+.0f} "
                                  f"+- {self._sigma_now:.0f}: its plane z={z + pred:.0f} is "
                                  f"{z + pred - jump.best_z:+.0f} from z={jump.best_z:.0f} +- {jump.sigma_steps:.0f} "
                                  f"(more than {tol:.0f})", now_s)
        elif abs(pred) > (tol := cfg.consistency_steps + cfg.consistency_fraction * abs(jump.move_steps)):
            return self._undo(jump, z, HybridReason.VERIFY_INCONSISTENT,
                              f"after the jump of {jump.move_steps:+d} steps to z={z} the CNN still says {pred:+.0f} "
                              f"(more than {tol:.0f}): no progress", now_s)
        self._verified = True  # the jump and this prediction agree: this frame needs no further consistency
        sigma = self._sigma_now if self._sigma_now else cfg.cnn_sigma_steps
        self._fuse(now_s, z + pred, sigma)  # a verified CNN plane enters the filter
        return None

    def _undo(self, jump: _Jump, z: int, reason: HybridReason, detail: str, now_s: float) -> HybridDecision:
        self._pending = None
        self._anchor = None
        self._refuted.append((jump.best_z, jump.sigma_steps))
        self._window.clear()
        self.strikes += 1
        self.counts[reason.value] += 1
        detail = f"strike {self.strikes}/{self.config.max_strikes} ({reason.value}): {detail}; back to z={jump.from_z}"
        if self.strikes >= self.config.max_strikes:
            self._enter_search(reason, detail, now_s)
        return self._move(z, jump.from_z, HybridReason.UNDO, detail, now_s)

    def _strike(self, reason: HybridReason, detail: str, z: int, m: float, pred: float | None,
                stamp_s: float, now_s: float) -> HybridDecision:
        """Count a strike; at max_strikes fall back to the search (this frame starts it); else hold."""
        self.strikes += 1
        detail = f"strike {self.strikes}/{self.config.max_strikes} ({reason.value}): {detail}"
        if self.strikes >= self.config.max_strikes:
            return self._fallback(reason, detail, z, m, pred, stamp_s, now_s)
        return self._hold(reason, detail)

    def _fallback(self, reason: HybridReason, detail: str, z: int, m: float, pred: float | None,
                  stamp_s: float, now_s: float) -> HybridDecision:
        self._enter_search(reason, detail, now_s, z)
        return self._search_step(z, m, pred, stamp_s, now_s)

    def _enter_search(self, reason: HybridReason, detail: str, now_s: float, z: int | None = None) -> None:
        """Start the search; its sweep starts on the side where the recent predictions (if any) put the plane."""
        lean = [b - z for _, _, b, _ in self._window] if z is not None else []
        self.search.restart(toward_steps=float(np.mean(lean)) if lean else 0.0)
        self._plan = None
        self._agree = 0
        self._sweep = None
        self.cnn_trusted = False
        self._change(Mode.SEARCH, reason, detail, now_s)

    def _search_step(self, z: int, m: float, pred: float | None, stamp_s: float, now_s: float) -> HybridDecision:
        cfg = self.config
        if not self.search.converged and pred is not None and self._clear_now and not self._search_interrupted:
            b = z + pred
            if self._sweep is not None and self._sweep[0] != z:
                z1, b1 = self._sweep
                tol = min(cfg.consistency_steps, 0.5 * abs(z - z1))  # a plane that moves with the lens is no plane
                if abs(b - b1) <= tol and self._refuted_match(b, self._sigma_now, cfg.consistency_steps) is None:
                    self.strikes = cfg.max_strikes - 1  # on probation: one more failure and the search is back
                    self._search_interrupted = True  # ... and then runs to its end
                    self.cnn_trusted = True
                    self._sweep = None
                    self._window.clear()
                    self._window.append((stamp_s, z, b, self._sigma_now))
                    self._verified = True
                    self._change(Mode.ACQUIRE, HybridReason.CNN_AGREES,
                                 f"during the search the CNN points at z={b1:.0f} from z={z1} and z={b:.0f} from "
                                 f"z={z} (tolerance {tol:.0f})", now_s)
                    return self._acquire(z, m, pred, self._confident_now, True, stamp_s, now_s)
            self._sweep = (z, b)
        d = self.search.update(z, m, stamp_s)
        if d.reason.value == "converged":  # at the best z found: track on, with the CNN if it agrees
            self._search_interrupted = False
            self._measure_ref = m
            self._window.clear()
            self._fuse_peak(now_s, z)
            self._agree = 0
            if not self._cnn_agrees(pred, z, now_s):  # a search can end on a side lobe: check the peak is sharp
                return self._start_refine(z, m, None, now_s, HybridReason.SEARCH_CONVERGED,
                                          f"search converged at z={z} (measure {m:.3g}); checking the peak on the "
                                          f"measure, the CNN not trusted")
            return self._hold(HybridReason.IN_FOCUS, f"at z={z}, measure {m:.3g}")
        if d.moves and d.target_steps is not None:
            return self._move(z, d.target_steps, HybridReason.SEARCHING, d.detail, now_s)
        return self._hold(HybridReason.SEARCHING, d.detail)

    def _cnn_agrees(self, pred: float | None, z: int, now_s: float) -> bool:
        """Count frames where the CNN says the lens (at the measure's focus) is in focus.

        After consistency_frames of them the CNN is trusted again (a CNN_AGREES change to track).
        """
        cfg = self.config
        if pred is None or abs(pred) > cfg.refine_window_steps:
            self._agree = 0
            return False
        self._agree += 1
        if self._agree < cfg.consistency_frames:
            return False
        self._agree = 0
        self.strikes = 0
        self._refuted.clear()
        self.cnn_trusted = True
        self._change(Mode.TRACK, HybridReason.CNN_AGREES,
                     f"the CNN agrees with the measure's focus at z={z} ({pred:+.1f} steps)", now_s)
        return True

    def _start_refine(self, z: int, m: float, pred: float | None, now_s: float, reason: HybridReason,
                      detail: str, center: float | None = None) -> HybridDecision:
        """Start a refine around ``center`` (default: where the trusted CNN points, in track the lens)."""
        rate = self.tracker.rate_steps_per_s
        if self.mode == Mode.TRACK and abs(rate) >= 0.5:
            direction = 1 if rate > 0 else -1
        elif pred is not None and pred != 0 and self.cnn_trusted:
            direction = 1 if pred > 0 else -1
        elif center is not None and round(center) != z:
            direction = 1 if center > z else -1
        else:
            direction = 1
        if center is not None:
            center = self._clamp(center)
        else:
            center = self._clamp(z + pred) if pred is not None and self.mode != Mode.TRACK and self.cnn_trusted else z
        self._plan = self._refine_plan(z, m, center, direction)
        self._plan_t0_s = now_s
        self._plan_bests = []
        self._plan_raw = []
        self._change(Mode.REFINE, reason, detail, now_s)
        self._plan_target = next(self._plan)  # a plan always measures something first
        return self._move(z, self._plan_target, HybridReason.PROBE, f"refine around z={center}: probe "
                                                                    f"z={self._plan_target}", now_s)

    def _refine_step(self, z: int, m: float, pred: float | None, now_s: float) -> HybridDecision:
        cfg = self.config
        if pred is not None and self.cnn_trusted:
            self._plan_bests.append(z + pred)
            self._plan_raw.append((z, pred + self.cnn_bias_steps))
        if z != self._plan_target:
            return self._move(z, self._plan_target, HybridReason.PROBE,
                              f"frame at z={z}, probing z={self._plan_target}",
                              now_s)
        try:
            self._plan_target = self._plan.send(m)
            return self._move(z, self._plan_target, HybridReason.PROBE, f"refine: probe z={self._plan_target}", now_s)
        except StopIteration as done:
            result = done.value
        self._plan = None
        if result is None:
            self._window.clear()
            self.strikes += 1
            detail = (f"strike {self.strikes}/{cfg.max_strikes} (refine_failed): no measure peak within "
                      f"{cfg.refine_span_steps} steps of the refine's start")
            if self.strikes >= cfg.max_strikes or not self.cnn_trusted:
                return self._fallback(HybridReason.REFINE_FAILED, detail, z, m, pred, now_s, now_s)
            self._change(Mode.ACQUIRE, HybridReason.REFINE_FAILED, detail, now_s)
            return self._hold(HybridReason.REFINE_FAILED, detail)
        best_z, best_m = result
        self._measure_ref = best_m
        self._fuse_peak(0.5 * (self._plan_t0_s + now_s), best_z)  # the peak was sampled over the refine
        self._disagree = 0
        cnn = float(np.median(self._plan_bests)) if self._plan_bests else None
        detail = f"measure peak z={best_z} ({best_m:.3g})"
        self._change(Mode.TRACK, HybridReason.FOCUSED, detail, now_s)
        if cnn is not None and abs(cnn - best_z) > cfg.disagree_steps:
            decision = self._strike(HybridReason.DISAGREES, f"the CNN's plane z={cnn:.0f} is {cnn - best_z:+.0f} "
                                                            f"from the {detail}", z, m, pred, now_s, now_s)
            if self.mode == Mode.SEARCH:
                return decision
        elif cnn is not None:
            self.strikes = 0  # the CNN and the measure agree: the model is trusted again
            self._search_interrupted = False
            self._learn_bias([raw - (best_z - zz) for zz, raw in self._plan_raw
                              if abs(best_z - zz) <= cfg.refine_window_steps])
        return self._move(z, best_z, HybridReason.REFINED, detail, now_s) if best_z != z else \
            self._hold(HybridReason.IN_FOCUS, detail)

    def _track(self, z: int, m: float, pred: float | None, confident: bool, now_s: float) -> HybridDecision | None:
        """Track mode; None hands the frame on to acquire (after a FAR_PREDICTION change)."""
        cfg = self.config
        if self._measure_ref is None:
            self._measure_ref = m
        dropped = m < self._drop_level(self._measure_ref)
        if self.cnn_trusted and confident and not dropped:
            # the measure holds: a CNN plane that agrees with the estimate follows the drift between refines
            self._fuse(now_s, z + pred, self._sigma_now or cfg.cnn_sigma_steps, only_if_agrees=True)
        best = self.tracker.predict_z(now_s)
        rate = self.tracker.rate_steps_per_s
        off = best - z if best is not None else 0.0
        drifting = self._peaks >= 2 and abs(rate) > 2.0 * self.tracker.rate_sigma() and off * rate > 0
        if abs(off) >= cfg.follow_steps and (drifting or abs(off) > 2.0 * self.tracker.sigma_z(now_s)):
            # the filter says the plane left the lens: follow it (a measure drop that it explains needs no refine)
            return self._move(z, round(best), HybridReason.FOLLOW_DRIFT,
                              f"best-plane estimate {best:.1f} +- {self.tracker.sigma_z(now_s):.1f} "
                              f"(drift {rate:+.2f} steps/s)", now_s)
        if dropped:
            full, agree, detail = self._consistent(now_s)
            far = pred is not None and confident and abs(pred) > cfg.refine_window_steps
            if self.cnn_trusted and far and full and agree:
                self._change(Mode.ACQUIRE, HybridReason.FAR_PREDICTION,
                             f"measure {m:.3g} below {self._drop_level(self._measure_ref):.3g} and the CNN says "
                             f"{pred:+.0f} ({detail})", now_s)
                return None
            return self._start_refine(z, m, pred, now_s, HybridReason.MEASURE_DROP,
                                      f"measure {m:.3g} below {self._drop_level(self._measure_ref):.3g} "
                                      f"(reference {self._measure_ref:.3g})")
        self._measure_ref = max(self._measure_ref, m)
        if not self.cnn_trusted:
            self._cnn_agrees(pred, z, now_s)
        elif pred is not None:
            self._disagree = self._disagree + 1 if confident and abs(pred) > cfg.disagree_steps else 0
            if self._disagree >= cfg.disagree_frames:
                self._disagree = 0
                decision = self._strike(HybridReason.DISAGREES, f"the CNN says {pred:+.0f} for {cfg.disagree_frames} "
                                                                f"frames while the measure stays at {m:.3g}",
                                        z, m, pred, now_s, now_s)
                if self.mode == Mode.SEARCH:
                    return decision
        return self._hold(HybridReason.IN_FOCUS, f"measure {m:.3g} (reference {self._measure_ref:.3g})")

    def _refine_plan(self, z_now: int, m_now: float, z0: int,
                     direction: int) -> Generator[int, float, tuple[int, float] | None]:
        """Yield z to measure, receive the measure there; return (peak z, its measure) or None.

        None means no peak within refine_span_steps of z0. Start at ``z0`` (the CNN's warm start; ``z_now`` with
        ``m_now`` is measured already), hill-climb in probe_steps (first towards ``direction``), then fit a
        3-point parabola around the best point; z already measured cost no frame.
        """
        cfg = self.config
        s, noise = cfg.probe_steps, cfg.measure_noise
        measured: dict[int, float] = {z_now: m_now}

        def measure(zz: int) -> Generator[int, float, float]:
            if zz not in measured:
                measured[zz] = yield zz
            return measured[zz]

        def climb(zc: int, d: int) -> Generator[int, float, int | None]:
            while True:
                zn = self._clamp(zc + d * s)
                if zn == zc or abs(zn - z0) > cfg.refine_span_steps:
                    return None
                if (yield from measure(zn)) <= measured[zc] + noise:
                    return zc
                zc = zn

        m0 = yield from measure(z0)
        z1 = self._clamp(z0 + direction * s)
        if (yield from measure(z1)) > m0 + noise:
            peak = yield from climb(z1, direction)
        else:
            zm = self._clamp(z0 - direction * s)
            peak = (yield from climb(zm, -direction)) if (yield from measure(zm)) > m0 + noise else z0
        if peak is None:
            return None
        lo, hi = self._clamp(peak - s), self._clamp(peak + s)
        if lo < peak < hi:
            f_lo, f_c, f_hi = (yield from measure(lo)), measured[peak], (yield from measure(hi))
            if peak_contrast(f_lo, f_c, f_hi) < max(cfg.min_peak_contrast, noise):
                return None  # no sharp peak: a flat measure, or a broad side lobe of a defocused image
            denom = f_lo - 2.0 * f_c + f_hi
            if denom < 0:
                vertex = self._clamp(peak + float(np.clip(0.5 * s * (f_lo - f_hi) / denom, -s / 2, s / 2)))
                yield from measure(vertex)
        best = max(measured, key=measured.get)
        return best, measured[best]

    # ------------------------------------------------------------------ helpers

    def _learn_bias(self, residuals: list[float]) -> None:
        """Add verified residuals (raw prediction - offset to the measure's plane); the bias is their median."""
        cfg = self.config
        if cfg.bias_frames == 0:
            return
        self._residuals.extend(r for r in residuals if abs(r) <= cfg.disagree_steps)
        if len(self._residuals) >= max(1, cfg.min_bias_frames):
            self.cnn_bias_steps = float(np.median(self._residuals))

    def _fuse(self, t_s: float, z_steps: float, sigma_steps: float, only_if_agrees: bool = False) -> None:
        """Fuse a best-plane measurement into the filter.

        One that disagrees with the estimate (:meth:`_tolerance` of the two sigmas) is skipped when
        ``only_if_agrees``; else the plane jumped (a worm switch the tracker did not report, a plane found far
        from the estimate): the filter forgets its position, keeping the drift rate, before fusing it.
        """
        best = self.tracker.predict_z(t_s)
        if best is not None and abs(z_steps - best) > self._tolerance(self.config.consistency_steps, sigma_steps,
                                                                      self.tracker.sigma_z(t_s)):
            if only_if_agrees:
                return
            self.tracker.forget_position(t_s)
        self.tracker.update(t_s, z_steps, sigma_steps)

    def _fuse_peak(self, t_s: float, z_steps: float) -> None:
        """Fuse a best plane found by the measure (refine or search): the filter's precise measurements."""
        self._fuse(t_s, z_steps, self.config.refine_sigma_steps)
        self._peaks += 1

    def _drop_level(self, reference: float) -> float:
        return reference - self.config.drop_fraction * abs(reference) - self.config.measure_noise

    def _clamp(self, z: float) -> int:
        return int(min(max(round(z), self.config.soft_min_steps), self.config.soft_max_steps))

    def _change(self, mode: Mode, reason: HybridReason, detail: str, t_s: float) -> ModeChange:
        change = ModeChange(self.mode, mode, reason, detail, float(t_s))
        if mode != self.mode:
            self._unusable = self._unsure = 0  # counted within one stay in acquire
            self._anchor = None
        self.mode = mode
        self.changes.append(change)
        self._change_now = change
        return change

    def _hold(self, reason: HybridReason, detail: str) -> HybridDecision:
        self.counts[reason.value] += 1
        return HybridDecision(0, self.mode, reason, detail, best_z_steps=self._estimate(),
                              change=getattr(self, "_change_now", None))

    def _estimate(self) -> float | None:
        return self.tracker.predict_z(self.tracker.t_s) if self.tracker.initialised else None

    def _move(self, z: int, target: float, reason: HybridReason, detail: str, now_s: float) -> HybridDecision:
        """Move to ``target`` (clamped to the soft limits); hold AT_LIMIT when nothing is left of it."""
        cfg = self.config
        wanted = int(round(target))
        clamped = self._clamp(wanted)
        at_limit = clamped != wanted
        if clamped == z:
            if at_limit:
                return self._hold(HybridReason.AT_LIMIT, f"{detail}: no move within soft limits "
                                                         f"[{cfg.soft_min_steps}, {cfg.soft_max_steps}] from {z}")
            return self._hold(reason, detail)
        self._move_end_s = math.inf
        self.counts[reason.value] += 1
        if at_limit:
            detail += f" (clamped at soft limit [{cfg.soft_min_steps}, {cfg.soft_max_steps}])"
        return HybridDecision(clamped - z, self.mode, reason, detail, target_steps=clamped,
                              best_z_steps=self.tracker.predict_z(now_s), change=self._change_now, at_limit=at_limit)
