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

"""Fine-tuning the bundled model to a microscope with other optics (issue 12, part 3); results in finetune.md.

"Other optics": a lower magnification (2.4 instead of 1.55 um per px), a smaller camera (1296x972 px), and
worms that absorb 4x more light (body) and 2x more (cuticle) than the simulator defaults the bundled model was
trained on. 8 plates x 2 stacks, +-200 steps every 5 (81 images per stack), seed 2000; the `finetune` command
splits by plate: 5 plates (10 stacks) to train on, 3 plates (6 stacks) held out. Every step is the CLI:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/finetune_other_optics.py /tmp/caf_ft

1. writes the plates (`core.dataset.synthetic.write_synthetic_dataset` with :data:`OTHER_OPTICS`), then
   `label`, `crop --fov 500`, `label` (what a user does after `acquire`);
2. `finetune` on 2 threads, timed (wall and CPU), which prints the held-out before/after table;
3. writes WORK/summary.json (the finetune summary plus the wall time and the machine's load average).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from celegans_autofocus.core.dataset.synthetic import write_synthetic_dataset
from celegans_autofocus.core.optics import OpticsConfig

OTHER_OPTICS = replace(OpticsConfig(), um_per_px=2.4, frame_width_px=1296, frame_height_px=972,
                       body_absorb_per_um=0.006, cuticle_absorb_per_um=0.1)
#: the control: the simulator's default optics on the same camera
SAME_CAMERA_DEFAULT_OPTICS = replace(OpticsConfig(), frame_width_px=1296, frame_height_px=972)
OPTICS = {"other": OTHER_OPTICS, "default": SAME_CAMERA_DEFAULT_OPTICS}
PLATES, STACKS_PER_PLATE, RANGE_STEPS, STEP_EVERY, SEED = 8, 2, 200, 5, 2000
VAL_FRACTION = 3 / 8


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "celegans_autofocus.cli", *args]


def make_data(data: Path, config: OpticsConfig) -> None:
    if not (data / "labels.csv").is_file():
        t0 = time.perf_counter()
        write_synthetic_dataset(data, PLATES, STACKS_PER_PLATE, RANGE_STEPS, STEP_EVERY, SEED, config=config)
        print(f"synth: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        subprocess.run(cli("label", str(data), "--quiet"), check=True)
        subprocess.run(cli("crop", str(data), "--fov", "500", "--quiet"), check=True)
        subprocess.run(cli("label", str(data), "--quiet"), check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="work directory (data/, run/, finetuned.onnx, summary.json)")
    parser.add_argument("--data-only", action="store_true", help="only write and label the plates")
    parser.add_argument("--optics", choices=sorted(OPTICS), default="other",
                        help="other (the benchmark) or default (the control: the simulator's optics, same camera)")
    args, extra = parser.parse_known_args()  # the rest goes to `finetune`
    data = args.work / "data"
    make_data(data, OPTICS[args.optics])
    if args.data_only:
        return 0
    command = cli("finetune", str(data), "--val-fraction", f"{VAL_FRACTION}", "--out", str(args.work / "run"),
                  "--export", str(args.work / "finetuned.onnx"), "--threads", "2", "--json",
                  str(args.work / "finetune.json"), *extra)
    print(" ".join(command), file=sys.stderr)
    load_before = os.getloadavg()
    t0, cpu0 = time.perf_counter(), os.times()
    subprocess.run(command, check=True)
    cpu1 = os.times()
    wall_s = time.perf_counter() - t0
    summary = json.loads((args.work / "finetune.json").read_text())
    summary["benchmark"] = {"wall_s": round(wall_s, 1),
                            "cpu_s": round(cpu1.children_user + cpu1.children_system
                                           - cpu0.children_user - cpu0.children_system, 1),
                            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                            "optics": OPTICS[args.optics].to_dict(), "command": " ".join(command)}
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["benchmark"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
