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

"""A short soak: benchmarks/soak.py, 30 s at 15 fps on 2592x1944 frames, nodes as processes.

No growth of RSS, threads or open files per node after the warm-up, and no queue (latency and backlog do
not grow).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def test_short_soak_no_leak_and_no_queue(tmp_path):
    out = tmp_path / "soak.json"
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, str(SOAK), "--duration-s", "30", "--warmup-s", "10", "--window-s", "10",
                           "--sample-s", "0.5", "--fps", "15", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    first, last = result["windows"][0], result["windows"][-1]
    assert len(result["windows"]) == 3 and result["published"] >= 400
    assert result["answered"] >= 0.5 * result["published"], result["windows"]   # keep-latest drops, never all
    for window in result["windows"]:   # a queue keeps frames waiting; a stall of the shared machine is one spike
        assert window["backlog_p95"] is not None and window["backlog_p95"] <= 3, window
    assert last["offset_p50_ms"] <= 2.0 * first["offset_p50_ms"] + 20.0, result["windows"]
    for node in ("worm_detector_node", "focus_predictor_node", "stepper_controller_node"):
        res = result["resources"][node]
        assert res["rss_kb"]["growth"] <= 0.05, (node, res["rss_kb"])
        assert res["threads"]["last"] <= res["threads"]["first"], (node, res["threads"])
        assert res["fds"]["last"] <= res["fds"]["first"], (node, res["fds"])
