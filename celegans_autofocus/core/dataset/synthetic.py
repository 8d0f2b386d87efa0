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


"""Synthetic z-stacks from the physical simulator (:mod:`core.optics`), written in the dataset layout."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..optics import OpticsConfig, StackRenderer, draw_stack
from .writer import StackWriter


def check_new_output_dir(out_dir: str | Path) -> None:
    """Raise FileExistsError unless ``out_dir`` is missing or an empty directory."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"output directory {out} exists and is not empty; choose a new one")


def write_synthetic_dataset(out_dir: str | Path, plates: int, stacks_per_plate: int, range_steps: int = 200,
                            step_every: int = 1, seed: int = 0, frame_shape: tuple[int, int] | None = None,
                            n_worms: int | None = None, config: OpticsConfig = OpticsConfig(),
                            progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write ``plates x stacks_per_plate`` synthetic stacks in the dataset layout.

    Each stack is drawn by :func:`core.optics.draw_stack` and imaged at
    ``z_index = -range_steps, -range_steps + step_every, ... <= range_steps``.
    ``frame_shape`` (h, w) is the stored image size of the whole field (default full frame);
    pixel coordinates in ``stack.yaml`` are in that image's pixels. ``progress(n)`` is called
    with the number of images just written. Each stack appears whole or not at all
    (:class:`core.dataset.writer.StackWriter`). Refuses a non-empty ``out_dir``. Returns the stack dirs.
    """
    out = Path(out_dir)
    for name, value, low in (("plates", plates, 1), ("stacks_per_plate", stacks_per_plate, 1),
                             ("range_steps", range_steps, 0), ("step_every", step_every, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    check_new_output_dir(out)
    fh, fw = frame_shape or (config.frame_height_px, config.frame_width_px)
    window = (0, 0, config.frame_width_px, config.frame_height_px)
    scale = fw / config.frame_width_px  # image px per full-frame px
    z_indices = list(range(-range_steps, range_steps + 1, step_every))
    seqs = np.random.SeedSequence(seed).spawn(plates)
    stack_dirs = []
    for p, plate_seq in enumerate(seqs):
        for s, stack_seq in enumerate(plate_seq.spawn(stacks_per_plate)):
            rng = np.random.default_rng(stack_seq)
            scene, best = draw_stack(rng, config, range_steps, n_worms)
            max_off = max(abs(best - z) for z in z_indices)
            renderer = StackRenderer(scene, config, (fh, fw), window, max_offset_steps=max_off, rng=rng)
            meta = {
                "step_um": float(config.step_um),
                "best_index": best,
                "true_best_index": best,
                "step_every": int(step_every),
                "window_px": [0, 0, int(fw), int(fh)],
                "fov_px": int(fw),
                "um_per_px": float(config.um_per_px / scale),
                "worms": [{"centroid_px": [round(c * scale, 2) for c in w.centroid_px],
                           "bbox_px": [int(round(v * scale)) for v in w.bbox_px]} for w in scene.worms],
                "synthetic": {"seed": int(seed), "plate": p, "stack": s, "optics": config.to_dict()},
            }
            stack_dir = out / "plates" / f"plate_{p:03d}" / f"stack_{s:03d}"
            stack_dir.parent.mkdir(parents=True, exist_ok=True)
            with StackWriter(stack_dir, meta) as writer:
                for z in z_indices:
                    writer.add(z, renderer.frame(best - z))
                    if progress is not None:
                        progress(1)
            stack_dirs.append(stack_dir)
    return stack_dirs
