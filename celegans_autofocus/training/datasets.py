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

"""torch ``Dataset``/``DataLoader`` of training samples: lazily read files and rendered pools, augmented.

:class:`ImageFiles` reads and preprocesses a dataset image when it is asked for (in the loader's worker
processes), so nothing is cached; an unreadable file stops training with a :class:`DatasetError` naming
it (the last epoch's checkpoint stays; fix the file and ``--resume``). :class:`TrainSamples` joins the
sources and augments each sample from a generator seeded by ``(seed, epoch, index)``: whatever process
or worker draws it, sample ``index`` of ``epoch`` is the same, so a resumed or a DDP run sees exactly the
samples of an uninterrupted single-process one. The order comes from a ``DistributedSampler`` (one
replica without DDP) seeded by ``(seed, epoch)``: N processes with ``batch_size / N`` each see, step by
step, the same global batches as one process with ``batch_size``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..core.images import PreprocessSpec, preprocess
from .augment import augment
from .config import TrainConfig
from .data import ImageSet, Sample, read_gray
from .synthetic import WORKER_START

AUGMENT_TAG = 5


class ImageFiles:
    """Dataset images read and preprocessed on access (float32 px x px) with their offsets in steps."""

    def __init__(self, samples: list[Sample], spec: PreprocessSpec) -> None:
        self.samples, self.spec = samples, spec
        self.offsets_steps = np.asarray([s.offset_steps for s in samples], np.float64)
        self.kinds = [s.kind for s in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int) -> np.ndarray:
        return preprocess(read_gray(self.samples[i].path), self.spec)


class ArrayImages:
    """Preprocessed images held in memory (an :class:`ImageSet`, e.g. the synthetic pool's, updated in place)."""

    def __init__(self, images: ImageSet) -> None:
        self.set = images

    def __len__(self) -> int:
        return len(self.set)

    @property
    def offsets_steps(self) -> np.ndarray:
        return self.set.offsets_steps

    @property
    def kinds(self) -> list[str]:
        return self.set.kinds

    def image(self, i: int) -> np.ndarray:
        return self.set.images[i].astype(np.float32)


class TrainSamples(Dataset):
    """The training samples of all sources, augmented per ``(seed, epoch, index)``; targets in output units."""

    def __init__(self, sources: list, cfg: TrainConfig) -> None:
        self.sources = [s for s in sources if len(s)]
        self.cfg = cfg
        self.epoch = 0
        self._starts = np.cumsum([0] + [len(s) for s in self.sources])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def kinds(self) -> set[str]:
        return {k for s in self.sources for k in s.kinds}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        src = int(np.searchsorted(self._starts, index, side="right")) - 1
        source, i = self.sources[src], index - int(self._starts[src])
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, self.epoch, index, AUGMENT_TAG])
        x = augment(source.image(i), rng, cfg.rotation_deg, cfg.hflip, cfg.vflip, cfg.rot90)
        y = np.float32(source.offsets_steps[i] / cfg.output_scale)
        return torch.from_numpy(x[None]), torch.tensor([y])


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def train_loader(samples: TrainSamples, cfg: TrainConfig, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Return the shuffled loader of this process: ``batch_size / world_size`` samples a step.

    A last step with a single sample per process is dropped (BatchNorm cannot train on one).
    """
    local = cfg.batch_size // world_size
    sampler = DistributedSampler(samples, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
    per_rank = len(sampler)
    drop_last = per_rank > local and per_rank % local == 1
    return DataLoader(samples, batch_size=local, sampler=sampler, num_workers=cfg.workers, drop_last=drop_last,
                      worker_init_fn=_worker_init if cfg.workers else None,
                      multiprocessing_context=WORKER_START if cfg.workers else None)
