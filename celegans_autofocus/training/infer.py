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

"""Batched torch inference on preprocessed images, and device selection."""
from __future__ import annotations

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device(name)


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, images: np.ndarray, output_scale: float,
                    device: torch.device, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """(offsets, sigmas) in steps (float64, N) for preprocessed images (N, px, px); model put in eval mode.

    ``sigmas`` is None for a one-output model; for the Gaussian NLL head it is ``exp(log_var / 2) * output_scale``.
    """
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[start:start + batch_size], dtype=np.float32)[:, None]).to(device)
        y = model(x).float().cpu().numpy()
        out.append(y.reshape(len(x), -1))
    if not out:
        return np.zeros(0), None
    raw = np.concatenate(out).astype(np.float64)
    sigmas = np.exp(0.5 * raw[:, 1]) * output_scale if raw.shape[1] > 1 else None
    return raw[:, 0] * output_scale, sigmas


def predict_steps(model: torch.nn.Module, images: np.ndarray, output_scale: float,
                  device: torch.device, batch_size: int = 32) -> np.ndarray:
    """Offsets in steps (float64, N) for preprocessed images (N, px, px); the model is put in eval mode."""
    return predict_outputs(model, images, output_scale, device, batch_size)[0]
