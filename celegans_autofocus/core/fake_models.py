"""Stand-in focus models for the closed-loop benchmark: a constant wrong answer, the right magnitude with a
random sign, and the simulator's truth. Each has ``predict(gray) -> offset_steps`` like
:class:`core.predictor.FocusPredictor`; the truth comes from a :class:`TruthTap` on the frame source."""
from __future__ import annotations

import numpy as np


class TruthTap:
    """A frame source (``frame(offset_steps, target_index)``) that remembers the true offset of the last frame."""

    def __init__(self, frames) -> None:
        self.frames = frames
        self.last_offset_steps: float | None = None

    def frame(self, offset_steps: float, target_index: int) -> np.ndarray:
        self.last_offset_steps = float(offset_steps)
        return self.frames.frame(offset_steps, target_index)

    def truth(self) -> float:
        if self.last_offset_steps is None:
            raise RuntimeError("TruthTap: no frame rendered yet")
        return self.last_offset_steps


class ConstantModel:
    """Always answers ``offset_steps`` (the issue's wrong model: -140 steps for a sharp worm)."""

    def __init__(self, offset_steps: float = -140.0) -> None:
        self.offset_steps = float(offset_steps)

    def predict(self, gray: np.ndarray) -> float:
        return self.offset_steps


class RandomSignModel:
    """The true |offset| with a random sign on every frame (seeded)."""

    def __init__(self, tap: TruthTap, seed: int = 0) -> None:
        self.tap = tap
        self.rng = np.random.default_rng(seed)

    def predict(self, gray: np.ndarray) -> float:
        return abs(self.tap.truth()) * float(self.rng.choice([-1.0, 1.0]))


class OracleModel:
    """The simulator's true offset of the frame."""

    def __init__(self, tap: TruthTap) -> None:
        self.tap = tap

    def predict(self, gray: np.ndarray) -> float:
        return self.tap.truth()
