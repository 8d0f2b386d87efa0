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

"""Soak: the multi-process focus pipeline for minutes, with latency per window and /proc resources per node.

    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=66
    .venv/bin/python benchmarks/soak.py --duration-s 600 --fps 15 --json soak_15fps_idle.json
    .venv/bin/python benchmarks/soak.py --duration-s 600 --fps 30 --hog --json soak_30fps_hog.json

The pipeline is benchmarks/e2e_latency.py's (its camera, frames, Fast DDS large-SHM profile and node command
lines are reused) plus the controller: this script is the camera (2592x1944 mono8 synthetic frames, stamped
at capture, ``camera/image_raw`` at ``--fps``) -> ``worm_detector_node`` -> ``focus_predictor_node -p
input:=crop`` -> ``stepper_controller_node`` (simulated stepper), each its own process as ``ros2 run``
starts them. ``--hog`` adds a busy loop pinned to CPU 0 for the whole run.

Figures (JSON on stdout and in ``--json``):

- per ``--window-s`` window (default 60 s) of the timed run: frames published, frames answered (a
  ``focus/offset`` came back), latency image stamp -> ``focus/offset`` received here p50 / p95 / max, the
  same to ``focus/command`` (the controller's answer), and the backlog: for each answered frame, the
  frames published after it before its answer came back (pipelining gives about latency / frame period). A
  queue anywhere on the path would show as a backlog and latency that grow window after window; keep-latest
  inputs drop frames instead (counted as published - answered).
- per process (detector, predictor, controller, and this camera), sampled every ``--sample-s`` from
  /proc/<pid>/status and /proc/<pid>/fd: VmRSS, threads and open file descriptors; ``growth`` compares the
  median of the samples of the first window after the warm-up with that of the last window.
- the predictor's own counters from /diagnostics (frames processed, dropped at its mailbox, rejected).
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_latency import (NAMESPACE, NodeProcesses, make_camera, node_commands, set_environment,  # noqa: E402
                         synthetic_frames)

from celegans_autofocus.core.predictor import default_model_path  # noqa: E402


def proc_sample(pid: int) -> dict | None:
    """Read VmRSS (kB), threads and open fds of ``pid``; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]), "fds": fds}


def pct(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def growth(samples: list[tuple[float, dict]], key: str, first: tuple[float, float], last: tuple[float, float]) -> dict:
    """Median of ``key`` over the samples in the ``first`` and ``last`` (t0, t1) windows, and their ratio - 1."""
    a = [s[key] for t, s in samples if first[0] <= t < first[1]]
    b = [s[key] for t, s in samples if last[0] <= t <= last[1]]
    if not a or not b:
        return {"first": None, "last": None, "growth": None}
    m_a, m_b = float(np.median(a)), float(np.median(b))
    return {"first": m_a, "last": m_b, "growth": (m_b - m_a) / m_a if m_a else None, "max": max(a + b)}


def start_hog() -> subprocess.Popen:
    """Start a busy loop pinned to CPU 0."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(hog.pid, {0})
    return hog


def soak(duration_s: float, fps: float, warmup_s: float, window_s: float, sample_s: float, threads: int,
         hog: bool, model: Path) -> dict:
    """Run the pipeline for ``warmup_s`` + ``duration_s`` and return the figures (see the module docstring)."""
    import rclpy
    from geometry_msgs.msg import PointStamped

    from celegans_autofocus.nodes.common import reliable_qos

    args = argparse.Namespace(threads=threads, pipeline="detector", frames=300, fov=500, detector_param=[])
    commands = node_commands(model, args)
    commands["stepper_controller_node"] = [
        sys.executable, "-m", "celegans_autofocus.nodes.stepper_controller_node", "--ros-args",
        "-r", f"__ns:={NAMESPACE}", "-p", "max_speed_steps_per_s:=4000.0"]
    nodes = NodeProcesses(commands)
    hog_proc = start_hog() if hog else None

    rclpy.init()
    camera = make_camera("detector")
    command_ns: dict[int, int] = {}   # stamp -> receipt time of focus/command
    offset_ns: dict[int, int] = {}    # stamp -> receipt time of focus/offset

    def stamp_of(msg) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    camera.create_subscription(PointStamped, "focus/command",
                               lambda m: command_ns.setdefault(stamp_of(m), time.time_ns()), reliable_qos(depth=50))
    camera.create_subscription(PointStamped, "focus/offset",
                               lambda m: offset_ns.setdefault(stamp_of(m), time.time_ns()), reliable_qos(depth=50))
    pids = {**{n: p.pid for n, p in nodes.procs.items()}, "camera (this script)": os.getpid()}
    samples: dict[str, list[tuple[float, dict]]] = {n: [] for n in pids}
    load = [os.getloadavg()[0]]
    try:
        deadline = time.monotonic() + 90
        while not (camera.get_publishers_info_by_topic(f"{NAMESPACE}/focus/command")
                   and camera.get_publishers_info_by_topic(f"{NAMESPACE}/focus/offset")
                   and camera.pub.get_subscription_count() > 0
                   and camera.get_subscriptions_info_by_topic(f"{NAMESPACE}/worm/crop")
                   and camera.get_subscriptions_info_by_topic(f"{NAMESPACE}/focus/offset")):
            nodes.check()
            if time.monotonic() > deadline:
                raise SystemExit("the nodes did not come up in 90 s:\n" + nodes.all_logs())
            rclpy.spin_once(camera, timeout_sec=0.1)
        frames, _ = synthetic_frames(8)
        period_s = 1.0 / fps
        t_start = time.monotonic()
        t_timed = t_start + warmup_s
        t_end = t_timed + duration_s
        next_sample = t_start
        published: list[tuple[float, int]] = []   # (run time s, stamp ns) of the timed frames
        i = 0
        next_frame = t_start
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            if now >= next_frame:
                stamp = camera.publish(frames[i % len(frames)])
                if now >= t_timed:
                    published.append((now - t_timed, stamp))
                i += 1
                next_frame += period_s
                if next_frame < now:            # late (the camera process was starved): no burst to catch up
                    next_frame = now + period_s
            if now >= next_sample:
                for name, pid in pids.items():
                    s = proc_sample(pid)
                    if s is not None:
                        samples[name].append((now - t_timed, s))
                next_sample += sample_s
                load.append(os.getloadavg()[0])
            nodes.check(" during the run")
            rclpy.spin_once(camera, timeout_sec=max(0.0, min(0.005, next_frame - time.monotonic())))
        drain_end = time.monotonic() + 2.0
        while time.monotonic() < drain_end:
            rclpy.spin_once(camera, timeout_sec=0.01)
        diag = dict(camera.diagnostics)
    finally:
        camera.destroy_node()
        rclpy.try_shutdown()
        if hog_proc is not None:
            hog_proc.kill()
            hog_proc.wait()
        exit_codes = nodes.stop()

    windows = []
    all_stamps = sorted(s for _, s in published)
    n_windows = max(1, int(np.ceil(duration_s / window_s - 1e-9)))
    for w in range(n_windows):
        t0, t1 = w * window_s, min((w + 1) * window_s, duration_s)
        stamps = [s for t, s in published if t0 <= t < t1]
        offset_ms = [(offset_ns[s] - s) * 1e-6 for s in stamps if s in offset_ns]
        command_ms = [(command_ns[s] - s) * 1e-6 for s in stamps if s in command_ns]
        backlog = [bisect.bisect_left(all_stamps, offset_ns[s]) - bisect.bisect_right(all_stamps, s)
                   for s in stamps if s in offset_ns]
        windows.append({
            "t0_s": t0, "t1_s": t1, "published": len(stamps), "answered": len(offset_ms),
            "dropped": len(stamps) - len(offset_ms),
            "offset_p50_ms": pct(offset_ms, 50), "offset_p95_ms": pct(offset_ms, 95),
            "offset_max_ms": pct(offset_ms, 100),
            "command_p50_ms": pct(command_ms, 50), "command_p95_ms": pct(command_ms, 95),
            "command_max_ms": pct(command_ms, 100), "backlog_max": max(backlog) if backlog else None,
            "backlog_p95": pct(backlog, 95),
        })
    first, last = (0.0, min(window_s, duration_s)), (max(0.0, duration_s - window_s), duration_s)
    resources = {name: {key: growth(s, key, first, last) for key in ("rss_kb", "threads", "fds")}
                 for name, s in samples.items()}
    return {
        "fps": fps, "duration_s": duration_s, "warmup_s": warmup_s, "window_s": window_s, "hog_on_cpu0": hog,
        "frame_wh": [int(frames[0].shape[1]), int(frames[0].shape[0])], "intra_op_threads": threads,
        "model": str(model), "published": len(published), "answered": sum(w["answered"] for w in windows),
        "windows": windows, "resources": resources,
        "samples": {n: [(round(t, 2), s) for t, s in v] for n, v in samples.items()},
        "predictor_diagnostics": {k: diag.get(k) for k in ("frames_processed", "frames_dropped", "frames_rejected")},
        "exit_codes": exit_codes, "load_average_1min": {"start": load[0], "max": max(load), "end": load[-1]},
        "cpu_count": os.cpu_count(), "ros_domain_id": os.environ["ROS_DOMAIN_ID"],
        "commands": {n: " ".join(c) for n, c in commands.items()},
    }


def markdown(result: dict) -> str:
    """Format the figures of one run as the Markdown tables of benchmarks/soak.md."""
    def ms(v) -> str:
        return "-" if v is None else f"{v:.1f}"

    rows = ["| window (s) | published | answered | offset p50 / p95 / max (ms) | command p95 (ms) | backlog max |",
            "|---|---|---|---|---|---|"]
    for w in result["windows"]:
        rows.append(f"| {w['t0_s']:.0f}-{w['t1_s']:.0f} | {w['published']} | {w['answered']} | "
                    f"{ms(w['offset_p50_ms'])} / {ms(w['offset_p95_ms'])} / {ms(w['offset_max_ms'])} | "
                    f"{ms(w['command_p95_ms'])} | {w['backlog_max']} |")
    rows += ["", "| process | RSS first / last window (MB) | growth | threads first / last | fds first / last |",
             "|---|---|---|---|---|"]
    for name, r in result["resources"].items():
        rss, th, fd = r["rss_kb"], r["threads"], r["fds"]
        if rss["first"] is None:
            continue
        rows.append(f"| {name} | {rss['first'] / 1024:.1f} / {rss['last'] / 1024:.1f} | {100 * rss['growth']:+.2f}% | "
                    f"{th['first']:.0f} / {th['last']:.0f} | {fd['first']:.0f} / {fd['last']:.0f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=600.0, help="timed run (after the warm-up)")
    parser.add_argument("--warmup-s", type=float, default=10.0, help="frames before timing starts")
    parser.add_argument("--fps", type=float, default=15.0, help="camera rate")
    parser.add_argument("--window-s", type=float, default=60.0, help="latency and resource window")
    parser.add_argument("--sample-s", type=float, default=1.0, help="/proc sampling period")
    parser.add_argument("--threads", type=int, default=1, help="predictor intra_op_threads")
    parser.add_argument("--hog", action="store_true", help="a busy loop pinned to CPU 0 for the whole run")
    parser.add_argument("--model", type=Path, default=None, help="ONNX crop model (default: models/default.onnx)")
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    parser.add_argument("--tables", type=Path, default=None, metavar="JSON",
                        help="only print the Markdown tables of an earlier run's JSON")
    args = parser.parse_args()
    if args.tables is not None:
        print(markdown(json.loads(args.tables.read_text())))
        return 0
    set_environment("large-shm")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    result = soak(args.duration_s, args.fps, args.warmup_s, args.window_s, args.sample_s, args.threads, args.hog,
                  (args.model or default_model_path()).resolve())
    result.update(started_utc=started, finished_utc=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()))
    text = json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2)
    print(text)
    print(markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
