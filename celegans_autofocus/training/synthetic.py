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

"""On-the-fly training and validation samples from the simulator's fast path (``optics.StackRenderer``).

A *view* is one random scene (1-3 worms) seen through one window, the full frame or, with probability
``synthetic_crop_fraction``, a square crop of a ``synthetic_fov_px`` size around one worm (its centre
jittered by up to ``synthetic_crop_jitter`` x fov, as a detector would place it), imaged at
``synthetic_offsets_per_view`` offsets (a share ``synthetic_randomize`` of the views through optics drawn by
``core.randomize.random_config``: magnification, NA, absorption, lawn, stage, camera): uniform in
+-``synthetic_range_steps``, a share ``synthetic_near_fraction`` uniform in +-``synthetic_near_steps`` instead
(near focus the sign cues are strongest). Frames are rendered with the shorter side ``synthetic_oversample`` x
the model input (the simulator computing the field on the camera's grid where it fits, and binning it like a
camera), then go through THE preprocessing, exactly as a camera frame would.

Every view is a pure function of its seed: training view ``v`` of generation ``g`` from
``(seed, g, v)``, validation view ``v`` from ``(synthetic_val_seed, v)``. The training pool holds
``synthetic_train`` samples; at every epoch after the first each view is redrawn with probability
``synthetic_refresh`` (drawn from ``(seed, epoch)``; 0 = a fixed pool, like a cache rendered once), so its
generation at any epoch is known without history, and a resumed run renders exactly the pool the
interrupted one had. The pool is also kept in the run's directory (``pool.npz``, written after every
refresh), so a resume renders only the views redrawn since then, not the whole pool. Views are rendered through a
``DataLoader`` (``workers`` processes); under DDP each rank renders its share and the ranks exchange them.
Validation scenes come from their own seed, so they never coincide with training scenes (or with written
validation plates).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core import optics, randomize
from ..core.atomic import atomic_path
from ..core.detection import crop_window
from ..core.images import PreprocessSpec, preprocess
from .config import TrainConfig
from .data import ImageSet

MAX_WORMS = 3
#: Bumped when the renderer draws other pixels for the same settings (2: blurs in camera px, 2026-12-02): a saved
#: pool of another version is rendered again on resume. Not in ``describe``, so data hashes stay comparable.
RENDER_VERSION = 2
#: Loader workers start from a fresh server process: a plain fork of a process whose OpenCV thread pool ran hangs.
WORKER_START = "forkserver"
TRAIN_TAG, VAL_TAG, REFRESH_TAG = 11, 13, 7


@dataclass(frozen=True)
class ViewRecipe:
    """What to draw for views: offset ranges, crop sizes and the share of crops."""

    offsets_per_view: int
    range_steps: float
    near_fraction: float
    near_steps: float
    crop_fraction: float
    fov_px: tuple[int, ...]
    crop_jitter: float
    oversample: float
    randomize: float = 0.0
    looks: tuple[str, ...] = ("default",)  # core.optics.LOOKS names: each view not randomised draws one

    @classmethod
    def training(cls, cfg: TrainConfig) -> "ViewRecipe":
        return cls(cfg.synthetic_offsets_per_view, cfg.synthetic_range_steps, cfg.synthetic_near_fraction,
                   cfg.synthetic_near_steps, cfg.synthetic_crop_fraction if cfg.crops else 0.0,
                   tuple(int(f) for f in cfg.synthetic_fov_px), cfg.synthetic_crop_jitter, cfg.synthetic_oversample,
                   cfg.synthetic_randomize, cfg.looks)

    @classmethod
    def validation(cls, cfg: TrainConfig) -> "ViewRecipe":
        """Offsets uniform in +-``synthetic_val_range_steps`` (no near share), crops of ``synthetic_val_fov_px``."""
        return cls(cfg.synthetic_offsets_per_view, cfg.synthetic_val_range_steps, 0.0, cfg.synthetic_val_range_steps,
                   cfg.synthetic_crop_fraction if cfg.crops else 0.0,
                   tuple(int(f) for f in cfg.synthetic_val_fov_px), cfg.synthetic_crop_jitter, cfg.synthetic_oversample,
                   looks=cfg.looks)


def render_view(recipe: ViewRecipe, spec: PreprocessSpec, seed: tuple[int, ...]) -> dict:
    """One view as ``{"images": float16 (K, px, px) preprocessed, "offsets_steps": (K,), "kind", "fov_px"}``."""
    rng = np.random.default_rng(list(seed))
    looks = recipe.looks  # a draw only for several: a one-look pool stays as it was
    config = optics.look_config(looks[int(rng.integers(len(looks)))] if len(looks) > 1 else looks[0])
    if recipe.randomize and rng.random() < recipe.randomize:  # no draw at 0: the default pool stays as it was
        config = randomize.random_config(rng, config)
    scene = optics.make_scene(rng, config, int(rng.integers(1, MAX_WORMS + 1)))
    width, height = int(config.frame_width_px), int(config.frame_height_px)
    side = int(round(spec.input_px * recipe.oversample))
    kind = "crop" if rng.random() < recipe.crop_fraction else "full"
    fov = 0
    if kind == "crop":
        fov = int(rng.choice(recipe.fov_px))
        cx, cy = scene.worms[int(rng.integers(len(scene.worms)))].centroid_px
        jitter = recipe.crop_jitter * fov
        centre = (cx + rng.uniform(-jitter, jitter), cy + rng.uniform(-jitter, jitter)) if jitter else (cx, cy)
        window = crop_window(centre, fov, (height, width))
        scale = min(1.0, side / min(window[2], window[3]))
        out_shape = (max(8, round(window[3] * scale)), max(8, round(window[2] * scale)))
    else:
        window = None
        out_shape = (side, round(side * width / height))
    k = recipe.offsets_per_view
    near = rng.random(k) < recipe.near_fraction
    offsets = np.where(near, rng.uniform(-recipe.near_steps, recipe.near_steps, k),
                       rng.uniform(-recipe.range_steps, recipe.range_steps, k))
    renderer = optics.StackRenderer(scene, config, out_shape, window_px=window, seed=int(rng.integers(2**31)),
                                    max_offset_steps=recipe.range_steps + 10)
    images = np.stack([preprocess(renderer.frame(float(o)), spec) for o in offsets]).astype(np.float16)
    return {"images": images, "offsets_steps": offsets.astype(np.float64), "kind": kind, "fov_px": fov}


class ViewDataset:
    """Map-style dataset of views by seed (a torch ``Dataset``: ``__len__`` and ``__getitem__``)."""

    def __init__(self, recipe: ViewRecipe, spec: PreprocessSpec, seeds: list[tuple[int, ...]]) -> None:
        self.recipe, self.spec, self.seeds = recipe, spec, seeds

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict:
        return render_view(self.recipe, self.spec, self.seeds[i])


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)


def _as_is(view: dict) -> dict:
    return view


def render_views(recipe: ViewRecipe, spec: PreprocessSpec, seeds: list[tuple[int, ...]], workers: int,
                 desc: str) -> list[dict]:
    """Render the views of ``seeds`` in order, through a DataLoader with ``workers`` processes."""
    from torch.utils.data import DataLoader

    loader = DataLoader(ViewDataset(recipe, spec, seeds), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_as_is, worker_init_fn=_worker_init if workers else None,
                        multiprocessing_context=WORKER_START if workers else None)
    return list(tqdm(loader, total=len(seeds), desc=desc, unit="view", file=sys.stderr, leave=False))


def _exchange(views: dict[int, dict], k: int, px: int, dist_ctx) -> dict[int, dict]:
    """Share the views each rank rendered with every rank (one broadcast per rank and array)."""
    if dist_ctx is None:
        return views
    import torch
    import torch.distributed as dist

    out = dict(views)
    for src in range(dist_ctx.world_size):
        mine = sorted(views) if src == dist_ctx.rank else None
        count = torch.tensor([len(mine) if mine is not None else 0], dtype=torch.int64)
        dist.broadcast(count, src)
        n = int(count.item())
        index = torch.zeros(n, dtype=torch.int64)
        images = torch.zeros((n, k, px, px), dtype=torch.float16)
        offsets = torch.zeros((n, k), dtype=torch.float64)
        meta = torch.zeros((n, 2), dtype=torch.int64)  # kind (1 = crop), fov_px
        if mine is not None:
            index[:] = torch.tensor(mine)
            images[:] = torch.from_numpy(np.stack([views[v]["images"] for v in mine]))
            offsets[:] = torch.from_numpy(np.stack([views[v]["offsets_steps"] for v in mine]))
            meta[:] = torch.tensor([[views[v]["kind"] == "crop", views[v]["fov_px"]] for v in mine])
        for tensor in (index, images, offsets, meta):
            dist.broadcast(tensor, src)
        if src != dist_ctx.rank:
            for j, v in enumerate(index.tolist()):
                out[v] = {"images": images[j].numpy(), "offsets_steps": offsets[j].numpy(),
                          "kind": "crop" if meta[j, 0] else "full", "fov_px": int(meta[j, 1])}
    return out


class _Views:
    """Views rendered into flat sample arrays (``n_samples`` of them; the last view may be cut)."""

    def __init__(self, n_samples: int, recipe: ViewRecipe, spec: PreprocessSpec) -> None:
        self.recipe, self.spec = recipe, spec
        self.k = recipe.offsets_per_view
        self.n_views = math.ceil(n_samples / self.k)
        side = spec.input_px
        self.images = np.zeros((n_samples, side, side), np.float16)
        self.offsets_steps = np.zeros(n_samples, np.float64)
        self.kinds = ["full"] * n_samples
        self.fov_px = np.zeros(n_samples, np.int64)

    def _render(self, views: list[int], seeds: list[tuple[int, ...]], workers: int, dist_ctx, desc: str) -> None:
        """Render ``views`` (this rank's share under DDP) and store every rank's into the arrays."""
        rank, world = (0, 1) if dist_ctx is None else (dist_ctx.rank, dist_ctx.world_size)
        mine = [j for j in range(len(views)) if j % world == rank]
        rendered = render_views(self.recipe, self.spec, [seeds[j] for j in mine], workers, desc)
        got = _exchange({views[j]: view for j, view in zip(mine, rendered)}, self.k, self.spec.input_px, dist_ctx)
        n = len(self.offsets_steps)
        for v in views:
            view = got[v]
            lo, hi = v * self.k, min((v + 1) * self.k, n)
            self.images[lo:hi] = view["images"][:hi - lo]
            self.offsets_steps[lo:hi] = view["offsets_steps"][:hi - lo]
            self.kinds[lo:hi] = [view["kind"]] * (hi - lo)
            self.fov_px[lo:hi] = view["fov_px"]

    def images_set(self) -> ImageSet:
        return ImageSet(self.images, self.offsets_steps, self.kinds)

    def __len__(self) -> int:
        return len(self.offsets_steps)


class SyntheticPool(_Views):
    """The pool of preprocessed synthetic training images, partly redrawn every epoch (exactly per seed)."""

    def __init__(self, cfg: TrainConfig, spec: PreprocessSpec) -> None:
        super().__init__(cfg.synthetic_train, ViewRecipe.training(cfg), spec)
        self.cfg = cfg
        self.look_configs = [optics.look_config(look) for look in cfg.looks]
        self.optics = self.look_configs[0]  # the sensor and motor (step_um) are the same in every look
        self._generation: np.ndarray | None = None

    def describe(self) -> dict:
        """Return the settings that define the synthetic data (hashed into the model metadata)."""
        c = self.cfg
        looks = repr(self.optics) if len(self.look_configs) == 1 else [repr(config) for config in self.look_configs]
        return {"synthetic_train": c.synthetic_train, "range_steps": c.synthetic_range_steps,
                "near_fraction": c.synthetic_near_fraction, "near_steps": c.synthetic_near_steps,
                "crop_fraction": self.recipe.crop_fraction, "fov_px": list(c.synthetic_fov_px),
                "crop_jitter": c.synthetic_crop_jitter, "offsets_per_view": c.synthetic_offsets_per_view,
                "oversample": c.synthetic_oversample, "refresh": c.synthetic_refresh, "seed": c.seed,
                "optics": looks, **({"randomize": c.synthetic_randomize} if c.synthetic_randomize else {})}

    def generations(self, epoch: int) -> np.ndarray:
        """Return the epoch each view was last drawn at, as of ``epoch`` (0-based; every view is drawn at epoch 0)."""
        gen = np.zeros(self.n_views, np.int64)
        for e in range(1, epoch + 1):
            draw = np.random.default_rng([self.cfg.seed, e, REFRESH_TAG]).random(self.n_views)
            redraw = draw < self.cfg.synthetic_refresh
            gen[redraw] = e
        return gen

    def _key(self) -> str:
        text = json.dumps({**self.describe(), "input_px": self.spec.input_px, "render": RENDER_VERSION,
                           **({"normalize": self.spec.normalize} if self.spec.normalize != "zscore" else {})},
                          sort_keys=True)  # a z-scored pool's key as before normalize existed
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path: Path) -> None:
        """Write the pool and its generations to ``path`` (atomically; uncompressed .npz)."""
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(fh, images=self.images, offsets_steps=self.offsets_steps, kinds=np.asarray(self.kinds),
                     fov_px=self.fov_px, generation=self._generation, key=np.asarray(self._key()))

    def load(self, path: Path) -> bool:
        """Take the pool saved at ``path`` if it is this recipe's (True); else False: the next update renders all."""
        self._generation = None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != self._key() or data["images"].shape != self.images.shape:
                    return False
                self.images[:] = data["images"]
                self.offsets_steps[:] = data["offsets_steps"]
                self.kinds[:] = [str(k) for k in data["kinds"]]
                self.fov_px[:] = data["fov_px"]
                generation = data["generation"].astype(np.int64)
        except (OSError, KeyError, ValueError):
            return False
        self._generation = generation
        return True

    def forget(self) -> None:
        """Render the whole pool at the next update."""
        self._generation = None

    def update(self, epoch: int, workers: int = 0, dist_ctx=None) -> int:
        """Render the views whose generation changed since the last call (all of them at first); returns how many."""
        gen = self.generations(epoch)
        stale = np.arange(self.n_views) if self._generation is None else np.flatnonzero(gen != self._generation)
        views = stale.tolist()
        seeds = [(self.cfg.seed, int(gen[v]), v, TRAIN_TAG) for v in views]
        if views:
            self._render(views, seeds, workers, dist_ctx, f"render synthetic (epoch {epoch + 1})")
        self._generation = gen
        return len(views)


class SyntheticValidation(_Views):
    """Held-out synthetic validation samples: ``synthetic_val`` of them from scenes of ``synthetic_val_seed``."""

    def __init__(self, cfg: TrainConfig, spec: PreprocessSpec, workers: int = 0, dist_ctx=None) -> None:
        super().__init__(cfg.synthetic_val, ViewRecipe.validation(cfg), spec)
        views = list(range(self.n_views))
        self._render(views, [(cfg.synthetic_val_seed, v, VAL_TAG) for v in views], workers, dist_ctx,
                     "render synthetic validation")
