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

"""Written full-res crop stacks vs re-rendered windows of the same scenes (fast 128 px / native-grid).

Evidence for models/MODEL_CARD.md ("Why full-resolution crops fail below -120 steps"): the bundled model
fails on native-grid renders exactly as on written crops, not on the fast path it was trained on.

    .venv/bin/celegans-autofocus synth out/val --plates 6 --stacks-per-plate 2 --range-steps 200 --step-every 10 \
        --seed 1000
    .venv/bin/celegans-autofocus label out/val; .venv/bin/celegans-autofocus crop out/val --fov 500
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fast_path_evidence.py out/val models/default.onnx out/evidence.npy

(the card's table used the crop stacks of plates 0-2, i.e. the same set written with --plates 3)
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from celegans_autofocus.core import optics
from celegans_autofocus.core.predictor import FocusPredictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_default_model import window_renderer  # noqa: E402  (beside this script)

root = Path(sys.argv[1])
model = FocusPredictor(sys.argv[2], providers="CPUExecutionProvider")
cfg = optics.OpticsConfig()
rows = []
for d in sorted(root.glob("plates/*/*__crop500_w*")):
    meta = yaml.safe_load((d / "stack.yaml").read_text())
    p = int(d.parent.name.split("_")[1])
    s = int(meta["parent"].split("_")[1])
    rng = np.random.default_rng(np.random.SeedSequence(1000).spawn(3)[p].spawn(2)[s])
    scene, best = optics.draw_stack(rng, cfg, 200)
    assert best == meta["true_best_index"], (best, meta)
    win = tuple(meta["window_px"])
    rend = {k: window_renderer(scene, cfg, win, k, 7) for k in ("fast", "native")}
    for f in sorted(d.glob("z_*.png"), key=lambda f: int(f.stem[2:])):
        z = int(f.stem[2:])
        off = best - z
        written = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        rows.append((off, model.predict(written), model.predict(rend["fast"].frame(off)),
                     model.predict(rend["native"].frame(off))))
    print(d.name, len(rows), flush=True)
r = np.array(rows)
off = r[:, 0]
far = np.abs(off) > 20
for i, name in enumerate(("written 500px crop", "fast-path 128 re-render", "native-grid re-render"), 1):
    e = np.abs(r[:, i] - off)
    sgn = np.mean(np.sign(r[far, i]) == np.sign(off[far]))
    neg = off < -120
    print(f"{name:26s} n={len(off)} MAE {e.mean():6.1f} sign {sgn:.3f} | "
          f"off<-120: MAE {e[neg].mean():6.1f} wrong-sign {np.mean(r[neg, i] > 0):.2f}")
np.save(sys.argv[3] if len(sys.argv) > 3 else "evidence.npy", r)
