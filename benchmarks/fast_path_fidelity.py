"""Does raising OpticsConfig.max_oversample make the low-res fast path match native rendering?

    .venv/bin/python benchmarks/fast_path_fidelity.py    (models/MODEL_CARD.md quotes its RMS figures)
"""
import dataclasses
import numpy as np
from celegans_autofocus.core import optics
from celegans_autofocus.core.detection import crop_window
from celegans_autofocus.core.images import preprocess, PreprocessSpec
from celegans_autofocus.core.sensor import FULL_FRAME_WH_PX
spec = PreprocessSpec(input_px=96)
cfg = optics.OpticsConfig(noise=False)
cfg4 = dataclasses.replace(cfg, max_oversample=4)
offs = [-200, -150, -100, -50, 0, 50, 100, 150, 200]
res = {}
for seed in range(4):
    rng = np.random.default_rng(7000 + seed)
    scene = optics.make_scene(rng, cfg, 2)
    win = crop_window(scene.worms[0].centroid_px, 500, FULL_FRAME_WH_PX[::-1])
    nat = optics.StackRenderer(scene, cfg, None, window_px=win, max_offset_steps=260)
    for name, c, out in (("fast128 os2 (current)", cfg, 128), ("fast128 os4", cfg4, 128), ("coarse125 os2 (sim 648px)", cfg, 125), ("coarse125 os4", cfg4, 125)):
        r = optics.StackRenderer(scene, c, (out, out), window_px=win, max_offset_steps=260)
        for o in offs:
            a = preprocess(nat.intensity(o).astype(np.float32), spec); b = preprocess(r.intensity(o).astype(np.float32), spec)
            res.setdefault((name, r.oversample, r.dx_um), {}).setdefault(o, []).append(float(np.sqrt(np.mean((a - b) ** 2))))
print("RMS difference (z-scored 96 px) to the native render, by offset; mean of 4 scenes")
print(" " * 40 + " ".join(f"{o:6d}" for o in offs))
for (name, os_, dx), d in res.items():
    print(f"{name:26s} os{os_} grid {dx:4.2f}um " + " ".join(f"{np.mean(d[o]):6.2f}" for o in offs))
