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

"""Worm detector benchmark: time per 2592x1944 frame, precision, recall and centre error.

Precision, recall and centre error are measured on synthetic optics frames (core/optics.py), where the
worms' true centroids are known.

    python benchmarks/detection.py --scenes 16 --offsets 0 25 -25 50 -50 100 -100 200 -200 --timing-calls 300

Matching: each detection is matched (greedily, nearest first) to an unmatched true worm whose
bounding box, grown by ``--match-margin-px``, contains the detection's centroid. Unmatched
detections are false positives, unmatched worms false negatives; a false negative whose true
centroid lies inside the box of a matched detection is counted as "merged" (touching or crossing
worms that came out as one detection). Worms whose true centroid lies outside the frame are not
counted (a detection on one is neither TP nor FP). Centre error is the distance between the
matched detection's centroid and the worm's true (area-weighted) centroid.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import cv2
import numpy as np

from celegans_autofocus.core.detection import WormDetector
from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, make_scene


def match(detections, worms, frame_wh, margin_px):
    """(tp, fp, fn, merged, centre errors px) for one frame; ``merged`` counts within ``fn``."""
    truths = [(w.centroid_px, w.bbox_px) for w in worms]
    inside = [0 <= c[0] < frame_wh[0] and 0 <= c[1] < frame_wh[1] for c, _ in truths]
    pairs = []
    for i, d in enumerate(detections):
        for j, (centre, (x0, y0, w, h)) in enumerate(truths):
            if (x0 - margin_px <= d.centroid_px[0] <= x0 + w + margin_px
                    and y0 - margin_px <= d.centroid_px[1] <= y0 + h + margin_px):
                pairs.append((math.dist(d.centroid_px, centre), i, j))
    used_d, used_w, errors = set(), set(), []
    for dist, i, j in sorted(pairs):
        if i not in used_d and j not in used_w:
            used_d.add(i)
            used_w.add(j)
            if inside[j]:
                errors.append(dist)
    missed = [j for j in range(len(truths)) if inside[j] and j not in used_w]
    boxes = [detections[i].bbox_px for i in used_d]
    merged = sum(1 for j in missed if any(x0 <= truths[j][0][0] <= x0 + w and y0 <= truths[j][0][1] <= y0 + h
                                          for x0, y0, w, h in boxes))
    return len(errors), len(detections) - len(used_d), len(missed), merged, errors


def accuracy(args, config: OpticsConfig, detector: WormDetector) -> tuple[dict, list[np.ndarray]]:
    per_offset = {o: {"tp": 0, "fp": 0, "fn": 0, "merged": 0, "errors": []} for o in args.offsets}
    frames = []
    max_off = max(abs(o) for o in args.offsets)
    seeds = np.random.SeedSequence(args.seed).spawn(args.scenes)
    for k, seq in enumerate(seeds):
        rng = np.random.default_rng(seq)
        scene = make_scene(rng, config, int(rng.integers(1, 4)))
        renderer = StackRenderer(scene, config, None, None, rng=rng, max_offset_steps=max_off)
        for offset in args.offsets:
            frame = renderer.frame(offset)
            tp, fp, fn, merged, errors = match(detector.detect(frame), scene.worms,
                                               (config.frame_width_px, config.frame_height_px), args.match_margin_px)
            acc = per_offset[offset]
            for key, value in (("tp", tp), ("fp", fp), ("fn", fn), ("merged", merged)):
                acc[key] += value
            acc["errors"] += errors
            if len(frames) < args.timing_frames:
                frames.append(frame)
        print(f"scene {k + 1}/{args.scenes} done", flush=True)
    table = {}
    for offset, acc in per_offset.items():
        tp, fp, fn, err = acc["tp"], acc["fp"], acc["fn"], np.array(acc["errors"])
        table[offset] = {
            "worms": tp + fn, "tp": tp, "fp": fp, "fn": fn, "merged": acc["merged"],
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "centre_error_median_px": float(np.median(err)) if err.size else float("nan"),
            "centre_error_p95_px": float(np.percentile(err, 95)) if err.size else float("nan"),
        }
    return table, frames


def timing(frames: list[np.ndarray], detector: WormDetector, calls: int) -> dict:
    for f in frames[:3]:
        detector.detect(f)  # warm-up
    times_ms = []
    for i in range(calls):
        t0 = time.perf_counter()
        detector.detect(frames[i % len(frames)])
        times_ms.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times_ms)
    return {"calls": calls, "frames": len(frames), "median_ms": float(np.median(t)),
            "p95_ms": float(np.percentile(t, 95)), "max_ms": float(t.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=16, help="synthetic scenes (1-3 worms each)")
    parser.add_argument("--offsets", type=int, nargs="+", default=[0, 25, -25, 50, -50, 100, -100, 200, -200],
                        help="defocus offsets in steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--match-margin-px", type=float, default=25.0)
    parser.add_argument("--timing-frames", type=int, default=20, help="distinct frames reused for timing")
    parser.add_argument("--timing-calls", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    detector = WormDetector()
    table, frames = accuracy(args, OpticsConfig(), detector)
    speed = timing(frames, detector, args.timing_calls)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{cv2.getNumThreads()} OpenCV threads, OpenCV {cv2.__version__}, frame 2592x1944 uint8")
    print(f"detector time over {speed['calls']} calls on {speed['frames']} frames: "
          f"median {speed['median_ms']:.1f} ms, p95 {speed['p95_ms']:.1f} ms, max {speed['max_ms']:.1f} ms\n")
    print("| offset (steps) | worms | TP | FP | FN (merged) | precision | recall | "
          "centre error median (px) | p95 (px) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for offset, r in table.items():
        print(f"| {offset:+d} | {r['worms']} | {r['tp']} | {r['fp']} | {r['fn']} ({r['merged']}) | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {r['centre_error_median_px']:.1f} | "
              f"{r['centre_error_p95_px']:.1f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"timing": speed, "accuracy": {str(k): v for k, v in table.items()}, "args": vars(args)},
                      fh, indent=2)


if __name__ == "__main__":
    main()
