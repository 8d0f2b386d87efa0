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

"""Architecture comparison under one equal, small CPU budget (the paper's Table 3, in miniature).

Every architecture gets the same training: the same on-the-fly synthetic samples (same seed),
epochs, input size, optimiser and augmentation; and the same validation images (the written
held-out plates of VAL). For each: MAE and sign accuracy on full frames and crops (through the
exported ONNX model, as shipped), the ONNX size, and the ORT CPU latency of one forward pass
(batch 1, this machine's threads) at the benchmark input size, at 224 px and at the paper's 500 px.

    python benchmarks/architectures.py VAL --out runs/bench_arch > benchmarks/architectures.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARCHS = ["mobilenetv3_small_100", "mobilenetv3_large_100", "resnet18", "convnextv2_pico"]


def ort_latency_ms(arch: str, input_px: int, n: int = 20) -> float:
    """p50 ms of one ORT CPU forward of a freshly built ``arch`` at ``input_px`` (weights do not matter)."""
    import onnxruntime as ort

    from celegans_autofocus.training.export import _export_graph
    from celegans_autofocus.training.models import create_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        _export_graph(create_model(arch).eval(), input_px, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 1, input_px, input_px)).astype(np.float32)
        times = []
        for i in range(n + 3):
            t0 = time.perf_counter()
            session.run(None, {"image": x})
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("val", type=Path, help="labelled held-out dataset (all plates validate)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_arch"))
    parser.add_argument("--archs", nargs="+", default=ARCHS)
    parser.add_argument("--input-px", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--synthetic-train", type=int, default=512)
    parser.add_argument("--max-val-samples", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: no OpenMP thrashing on a shared CPU)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.evaluate import evaluate
    from celegans_autofocus.training.export import export_checkpoint
    from celegans_autofocus.training.loop import train

    budget = dict(input_px=args.input_px, epochs=args.epochs, batch_size=16, lr=1e-3, val_fraction=1.0,
                  synthetic_train=args.synthetic_train, synthetic_range_steps=250.0, synthetic_refresh=0.5,
                  synthetic_offsets_per_view=8, synthetic_fov_px=[500, 750, 1000, 1250],
                  synthetic_crop_fraction=0.75, synthetic_near_fraction=0.3, loss="huber",
                  max_val_samples=args.max_val_samples, seed=0, device="cpu")
    rows = []
    for arch in args.archs:
        out = args.out / arch
        t0 = time.perf_counter()
        train(args.val, TrainConfig(arch=arch, **budget), out, resume=(out / "last.pt").exists())
        train_s = time.perf_counter() - t0
        exported = export_checkpoint(out / "best.pt", out / "model.onnx")
        result = evaluate([out / "model.onnx"], args.val, max_images=args.max_val_samples, fov_sizes_px=())
        table = {r["kind"]: r for r in result["table"]}
        row = {"arch": arch, "train_s": round(train_s, 1), "onnx_mb": round(exported["size_mb"], 2),
               **{f"mae_{k}_steps": table[k]["mae_steps"] for k in ("full", "crop", "all") if k in table},
               **{f"sign_acc_{k}": table[k]["sign_accuracy"] for k in ("full", "crop") if k in table},
               **{f"ort_ms_{px}px": round(ort_latency_ms(arch, px), 2) for px in sorted({args.input_px, 224, 500})}}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"budget": budget, "val": str(args.val), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
