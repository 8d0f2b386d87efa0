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

"""CPU latency of a shipped ONNX model as the predictor node sees it: one full frame in, one offset out."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.sensor import FULL_FRAME_WH_PX


def predictor_latency_ms(model_path: Path | str, frame_hw: tuple[int, int] = FULL_FRAME_WH_PX[::-1], n: int = 50,
                         threads: int = 0, seed: int = 0) -> dict:
    """p50/p95/mean ms of ``FocusPredictor.predict`` (preprocessing included) and of the model alone."""
    from ..core.predictor import FocusPredictor

    predictor = FocusPredictor(model_path, providers=["CPUExecutionProvider"], intra_op_threads=threads)
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, frame_hw, dtype=np.uint8) for _ in range(4)]
    x = predictor.preprocess(frames[0])[None]
    total, model_only = [], []
    for i in range(n + 5):
        t0 = time.perf_counter()
        predictor.predict(frames[i % len(frames)])
        t1 = time.perf_counter()
        predictor.session.run(None, {predictor.session.get_inputs()[0].name: x})
        t2 = time.perf_counter()
        if i >= 5:  # warm-up
            total.append((t1 - t0) * 1e3)
            model_only.append((t2 - t1) * 1e3)
    p50 = float(np.percentile(total, 50))
    return {"frame_hw": list(frame_hw), "n": n, "threads": threads,
            "total_p50_ms": p50, "total_p95_ms": float(np.percentile(total, 95)),
            "model_p50_ms": float(np.percentile(model_only, 50)),
            "model_p95_ms": float(np.percentile(model_only, 95)), "fps_p50": 1e3 / p50}
