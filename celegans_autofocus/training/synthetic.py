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

"""On-the-fly training samples from the simulator's fast path (``optics.StackRenderer``).

Each epoch a fraction (``synthetic_refresh``) of a pool of ``synthetic_train`` samples is redrawn:
new random scenes (1-3 worms), each imaged at ``synthetic_offsets_per_view`` offsets uniform in
+-``synthetic_range_steps`` (a share ``synthetic_near_fraction`` uniform in +-``synthetic_near_steps``
instead: near focus the sign cues are strongest, so the sign is learnt there first); each frame is the full
frame or, with probability ``synthetic_crop_fraction``, a square crop of a ``synthetic_fov_px`` size centred on
one worm.
Frames are rendered at reduced resolution (shorter side ``synthetic_oversample`` x the model
input, the view's own aspect ratio, the simulator binning its finer field grid like a camera)
and then go through THE preprocessing, exactly as a camera frame would. These scenes are fresh
random draws, so they never coincide with the written validation plates. A resumed run refills
the whole pool from the resumed epoch's seed (deterministic, though not the interrupted run's pool).
"""
from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from ..core import optics
from ..core.detection import crop_window
from ..core.images import PreprocessSpec, preprocess
from .config import TrainConfig
from .data import ImageSet

MAX_WORMS = 3


class SyntheticPool:
    """A pool of preprocessed synthetic training images, partly redrawn every epoch."""

    def __init__(self, cfg: TrainConfig, spec: PreprocessSpec) -> None:
        self.cfg = cfg
        self.spec = spec
        self.optics = optics.OpticsConfig()
        self.frame_wh = (int(self.optics.frame_width_px), int(self.optics.frame_height_px))
        n, side = cfg.synthetic_train, spec.input_px
        self.images = np.zeros((n, side, side), np.float16)
        self.offsets_steps = np.zeros(n, np.float64)
        self.kinds = ["full"] * n
        self._filled_epoch: int | None = None

    def describe(self) -> dict:
        """Return the settings that define the synthetic data (hashed into the model metadata)."""
        c = self.cfg
        return {"synthetic_train": c.synthetic_train, "range_steps": c.synthetic_range_steps,
                "near_fraction": c.synthetic_near_fraction, "near_steps": c.synthetic_near_steps,
                "crop_fraction": c.synthetic_crop_fraction if c.crops else 0.0, "fov_px": list(c.synthetic_fov_px),
                "offsets_per_view": c.synthetic_offsets_per_view, "oversample": c.synthetic_oversample,
                "refresh": c.synthetic_refresh, "seed": c.seed, "optics": repr(self.optics)}

    def images_set(self) -> ImageSet:
        return ImageSet(self.images, self.offsets_steps, self.kinds)

    def update(self, epoch: int) -> None:
        """Fill the whole pool (first epoch of this process, e.g. after a resume) or redraw a share of it."""
        n = len(self.offsets_steps)
        if self._filled_epoch is None:
            self._fill(np.arange(n), epoch, full=True)
        else:
            k = int(round(self.cfg.synthetic_refresh * n))
            slots = np.random.default_rng([self.cfg.seed, epoch, 7]).choice(n, size=k, replace=False)
            self._fill(np.sort(slots), epoch, full=False)
        self._filled_epoch = epoch

    def _fill(self, slots: np.ndarray, epoch: int, full: bool) -> None:
        rng = np.random.default_rng([self.cfg.seed, epoch, 1 if full else 2])
        bar = tqdm(total=len(slots), desc=f"render synthetic (epoch {epoch + 1})", unit="img",
                   file=sys.stderr, leave=False)
        pos = 0
        while pos < len(slots):
            for image, offset, kind in self._render_view(rng):
                if pos == len(slots):
                    break
                slot = slots[pos]
                self.images[slot] = preprocess(image, self.spec).astype(np.float16)
                self.offsets_steps[slot] = offset
                self.kinds[slot] = kind
                pos += 1
                bar.update(1)
        bar.close()

    def _render_view(self, rng: np.random.Generator):
        """``synthetic_offsets_per_view`` frames of one new scene, each a full or a crop view (renderers cached)."""
        cfg = self.cfg
        scene = optics.make_scene(rng, self.optics, int(rng.integers(1, MAX_WORMS + 1)))
        side = int(round(self.spec.input_px * cfg.synthetic_oversample))
        renderers: dict[str, optics.StackRenderer] = {}
        for _ in range(cfg.synthetic_offsets_per_view):
            kind = "crop" if cfg.crops and rng.random() < cfg.synthetic_crop_fraction else "full"
            if kind not in renderers:
                renderers[kind] = self._renderer(scene, kind, side, rng)
            near = rng.random() < cfg.synthetic_near_fraction
            limit = cfg.synthetic_near_steps if near else cfg.synthetic_range_steps
            offset = float(rng.uniform(-limit, limit))
            yield renderers[kind].frame(offset), offset, kind

    def _renderer(self, scene, kind: str, side: int, rng: np.random.Generator) -> optics.StackRenderer:
        """Fast-path renderer of the whole frame, or of a crop around a random worm; shorter side >= ``side``."""
        width, height = self.frame_wh
        if kind == "crop":
            worm = scene.worms[int(rng.integers(len(scene.worms)))]
            window = crop_window(worm.centroid_px, int(rng.choice(self.cfg.synthetic_fov_px)), (height, width))
            scale = min(1.0, side / min(window[2], window[3]))
            out_shape = (max(8, round(window[3] * scale)), max(8, round(window[2] * scale)))
        else:
            window = None
            out_shape = (side, round(side * width / height))
        return optics.StackRenderer(scene, self.optics, out_shape, window_px=window,
                                    seed=int(rng.integers(2**31)),
                                    max_offset_steps=self.cfg.synthetic_range_steps)
