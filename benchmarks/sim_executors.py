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

"""Which rclpy executor `celegans-autofocus sim` runs its nodes on: fps and latency, idle and loaded, one run.

    .venv/bin/python benchmarks/sim_executors.py [--repeats 2] [--duration 10] [--out benchmarks/sim_executors.md]

Each cell is `celegans-autofocus sim --clock wall --duration D --executor E` in its own process (DDS on
loopback, a ROS domain of its own), the executors interleaved so that a change of load on the machine hits
all of them alike. "loaded": one busy Python loop per core runs beside it. "split": the camera (player) on its own
single-threaded executor and thread, the pipeline on another; the others: all nodes on one executor. Latency is
image stamp -> focus/offset, as the sim summary reports it. A run that gives no summary within the time limit is
reported as such (the rclpy EventsExecutor of the kilted wheels hung here).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXECUTORS = ("split", "single", "multi", "events")


def _busy() -> None:
    while True:
        pass


def run_sim(executor: str, duration_s: float, domain_id: int, timeout_s: float) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(domain_id)}
        cmd = [sys.executable, "-m", "celegans_autofocus.cli", "sim", "--clock", "wall", "--duration",
               str(duration_s), "--executor", executor, "--frame-height", "486", "--summary-json", str(out)]
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        return json.loads(out.read_text()) if out.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sim_executors.md"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results: dict[tuple[str, str], list[dict | None]] = {}
    for load in ("idle", "loaded"):
        hogs = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(cores if load == "loaded" else 0)]
        for hog in hogs:
            hog.start()
        try:
            for repeat in range(args.repeats):
                for i, executor in enumerate(EXECUTORS):
                    summary = run_sim(executor, args.duration, 150 + i, timeout_s=2 * args.duration + 30)
                    results.setdefault((executor, load), []).append(summary)
                    fps = summary["wall"]["fps"] if summary else None
                    result = f"{fps:.1f} fps, p95 {summary['latency_p95_ms']:.1f} ms" if summary else "no summary"
                    print(f"{load} {executor} #{repeat}: {result}", flush=True)
        finally:
            for hog in hogs:
                hog.terminate()

    def cell(runs: list[dict | None], key) -> str:
        values = [key(r) for r in runs if r is not None]
        if not values:
            return "no run finished"
        return " / ".join(f"{v:.1f}" for v in values)

    lines = [
        "# Executor of `celegans-autofocus sim` (wall clock)", "",
        "Command: `.venv/bin/python benchmarks/sim_executors.py "
        f"--repeats {args.repeats} --duration {args.duration:g}`",
        f"({time.strftime('%Y-%m-%d')}, {cores} cores, {platform.python_version()}; "
        f"`sim --clock wall --duration {args.duration:g}`, 15 fps requested, 648x486 frames, bundled crop model).",
        "Each cell lists the runs (`/`-separated). Latency: image stamp -> `focus/offset`.", "",
        "| executor | load | fps | latency p50 (ms) | latency p95 (ms) | frames to focus |",
        "|---|---|---|---|---|---|",
    ]

    def frames_to_focus(run: dict) -> float:
        return float(run["frames_to_focus"] if run["frames_to_focus"] is not None else -1)

    for executor in EXECUTORS:
        for load in ("idle", "loaded"):
            runs = results[(executor, load)]
            lines.append(f"| {executor} | {load} | {cell(runs, lambda r: r['wall']['fps'])} | "
                         f"{cell(runs, lambda r: r['latency_p50_ms'])} | {cell(runs, lambda r: r['latency_p95_ms'])} | "
                         f"{cell(runs, frames_to_focus)} |")
    medians = {e: statistics.median(r["wall"]["fps"] for r in results[(e, "loaded")] if r) if any(
        results[(e, "loaded")]) else 0.0 for e in EXECUTORS}
    lines += ["", "Median fps under load: " + ", ".join(f"{e} {v:.1f}" for e, v in medians.items()), ""]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
