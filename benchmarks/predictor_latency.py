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

"""Latency of FocusPredictor.predict() on a full 2592x1944 uint8 frame (or a worm crop), preprocessing included.

    .venv/bin/python benchmarks/predictor_latency.py                       # models/default.onnx
    .venv/bin/python benchmarks/predictor_latency.py --crop-px 500         # a 500x500 worm crop (the crop models' view)
    .venv/bin/python benchmarks/predictor_latency.py --model M.onnx --standin mobilenetv3_small_100:500

``--standin ARCH:INPUT_PX`` exports a randomly initialised timm model (torch needed, benchmark
only) with valid metadata, for timing before a trained model exists; weights do not change
latency. Reports p50/p95 of the whole predict() and of its two parts (preprocess, ONNX run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from celegans_autofocus.core.images import PreprocessSpec, preprocess
from celegans_autofocus.core.predictor import METADATA_KEY, FocusPredictor, ModelError, default_model_path
from celegans_autofocus.core.sensor import FULL_FRAME_WH_PX

FRAME_HW = FULL_FRAME_WH_PX[::-1]


def export_standin(arch: str, input_px: int, out_dir: Path) -> Path:
    """Export a random-weight timm regressor as ONNX (opset 18, dynamic batch) with our metadata."""
    import onnx
    import timm
    import torch

    model = timm.create_model(arch, pretrained=False, in_chans=1, num_classes=1).eval()
    path = out_dir / f"standin_{arch}_{input_px}.onnx"
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 1, input_px, input_px), str(path), opset_version=18,
                          input_names=["image"], output_names=["offset_steps"],
                          dynamic_axes={"image": {0: "N"}, "offset_steps": {0: "N"}}, dynamo=False)
    proto = onnx.load(str(path))
    meta = {"schema": 1, "preprocess": PreprocessSpec(input_px=input_px).to_dict(), "step_um": 5.0,
            "arch": f"{arch} (random weights, latency stand-in)", "output": "offset_steps", "output_scale": 1.0,
            "input_view": "full", "train_data_hash": "none", "epochs": 0, "val_mae_steps": None}
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    onnx.save(proto, str(path))
    return path


def percentiles(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean())}


def bench(path: Path, frames: int, warmup: int, threads: int, frame: np.ndarray) -> dict:
    predictor = FocusPredictor(path, providers="auto", intra_op_threads=threads)
    x = predictor.preprocess(frame)[None]
    for _ in range(warmup):
        predictor.predict(frame)
    total, pre, run = [], [], []
    for _ in range(frames):
        t0 = time.perf_counter()
        predictor.predict(frame)
        t1 = time.perf_counter()
        preprocess(frame, predictor.spec)
        t2 = time.perf_counter()
        predictor.session.run(None, {predictor.session.get_inputs()[0].name: x})
        t3 = time.perf_counter()
        total.append((t1 - t0) * 1e3)
        pre.append((t2 - t1) * 1e3)
        run.append((t3 - t2) * 1e3)
    return {"model": str(path), "arch": predictor.metadata.get("arch"), "input_px": predictor.spec.input_px,
            "size_mb": round(path.stat().st_size / 1e6, 2), "providers": predictor.providers,
            "intra_op_threads": threads, "frames": frames, "predict": percentiles(total),
            "preprocess": percentiles(pre), "onnx_run": percentiles(run)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path, default=[], help="ONNX model (repeatable)")
    parser.add_argument("--standin", action="append", default=[], metavar="ARCH:INPUT_PX",
                        help="also time a random-weight timm export (repeatable)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    parser.add_argument("--crop-px", type=int, default=0,
                        help="time a square crop of this side instead of the full frame (0 = full frame)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    models = list(args.model)
    if not models and not args.standin:
        try:
            models.append(default_model_path())
        except ModelError as exc:
            print(f"no model to time: {exc}; pass --model or --standin", file=sys.stderr)
            return 2
    if args.crop_px < 0:
        parser.error(f"--crop-px must be >= 0 (0 = full frame), got {args.crop_px}")
    frame_hw = (args.crop_px, args.crop_px) if args.crop_px > 0 else FRAME_HW
    frame = np.random.default_rng(0).integers(0, 256, frame_hw, dtype=np.uint8)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.standin:
            arch, _, px = spec.partition(":")
            models.append(export_standin(arch, int(px or 500), Path(tmp)))
        for path in models:
            try:
                results.append(bench(path, args.frames, args.warmup, args.threads, frame))
            except ModelError as exc:
                print(f"skipping: {exc}", file=sys.stderr)
                return 2
    load = os.getloadavg()
    print(f"frame {frame_hw[1]}x{frame_hw[0]} uint8, {args.frames} frames after {args.warmup} warm-up, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'model':44s} {'px':>4s} {'predict p50/p95 ms':>19s} {'preprocess p50/p95':>19s} {'onnx run p50/p95':>17s}")
    for r in results:
        print(f"{Path(r['model']).name[:44]:44s} {r['input_px']:4d} "
              f"{r['predict']['p50_ms']:9.1f}/{r['predict']['p95_ms']:<9.1f} "
              f"{r['preprocess']['p50_ms']:9.1f}/{r['preprocess']['p95_ms']:<9.1f} "
              f"{r['onnx_run']['p50_ms']:8.1f}/{r['onnx_run']['p95_ms']:<8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "frame_hw_px": list(frame_hw), "results": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
