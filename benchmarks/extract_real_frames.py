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

"""Extract the real worm frames listed in benchmarks/real_images.md from a repository snapshot you fetched.

    python benchmarks/extract_real_frames.py SOURCE GIT_DIR OUT_DIR

SOURCE is one of the names below; GIT_DIR a (bare) git directory of that repository, e.g. made by
``git clone --bare https://github.com/<repo>``; OUT_DIR receives grayscale PNGs and ``frames.yaml``
(source, repository path, licence, pixel size where known). Nothing here downloads anything and no
frame is stored in this repository: the images stay under their owners' licences (see the manifest).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from celegans_autofocus.core.real_frames import FRAMES_YAML, IMAGE_EXT


@dataclass(frozen=True)
class Source:
    repo: str
    licence: str
    shows: str
    paths: tuple[str, ...]  # exact paths or one folder ending in "/" (every image in it)
    um_per_px: float | None  # None: unknown, estimated from the worm width by the statistics
    every: int = 1  # keep every n-th file of a folder
    crops: dict | None = None  # path -> ((x0, y0, w, h), ...): photo panels cut from a figure
    bottom_px: int = 0  # rows cut off the bottom (scale bar, caption)


SOURCES = {
    "biondong": Source("BionDong/worm-locomotion-feature-analysis", "none stated (all rights reserved)",
                       "brightfield, one adult crawling on agar with tracks, 2040x1088, sharp",
                       ("worm curvature analysis/samples/",), None, every=2),
    "openautoscope": Source("venkatachalamlab/OpenAutoScope-v2", "MIT",
                            "10x IR brightfield adults on agar (one on a bacterial lawn), panels cut from two figures",
                            ("images/images/gui.PNG", "images/images/trackercnn.png"), None,
                            crops={"images/images/gui.PNG": ((91, 367, 508, 505),),
                                   "images/images/trackercnn.png": ((1310, 336, 382, 342), (1310, 730, 382, 346))}),
    "worme": Source("group-nn-at-icmab-csic/WorMe", "BSD-3-Clause",
                    "brightfield larvae (L1-L2, 24 h cultures), 1920x1080, 0.855 px/um per the example's parameters",
                    ("examples/Example_images_C24/",), 1 / 0.855, every=3, bottom_px=60),
    "wormpose": Source("iteal/wormpose_data", "BSD-3-Clause",
                       "low-resolution crops (98x51) of an adult coiling on agar, from the Open Worm Movement Database",
                       ("datasets/sample_data/",), None, every=100),
    "hilariie": Source("hilariie/C-elegans-tracker", "MIT",
                       "stereo-microscope brightfield, several adults/L4 on a lawn, low magnification, "
                       "Roboflow 640x640",
                       ("yolo/segmentation/img/test/images/",), None, every=6),
}


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _files(git_dir: Path, src: Source) -> list[str]:
    out = []
    for p in src.paths:
        if not p.endswith("/"):
            out.append(p)
            continue
        names = _git(git_dir, "ls-tree", "--name-only", "HEAD", p).decode().splitlines()
        out += sorted(n for n in names if n.lower().endswith(IMAGE_EXT))[:: src.every]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", choices=sorted(SOURCES))
    ap.add_argument("git_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    args = ap.parse_args(argv)
    src = SOURCES[args.source]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for path in _files(args.git_dir, src):
        data = np.frombuffer(_git(args.git_dir, "show", f"HEAD:{path}"), np.uint8)
        gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        if gray is None:
            print(f"skipped {path}: not an image", file=sys.stderr)
            continue
        if src.bottom_px:
            gray = gray[: -src.bottom_px]
        boxes = (src.crops or {}).get(path)
        panels = [gray[y:y + h, x:x + w] for x, y, w, h in boxes] if boxes else [gray]
        for i, panel in enumerate(panels):
            name = f"{args.source}_{Path(path).stem}" + (f"_{i}" if len(panels) > 1 else "") + ".png"
            cv2.imwrite(str(args.out_dir / name), panel)
            frames.append({"file": name, "repo_path": path})
    meta = {"source": args.source, "repo": src.repo, "licence": src.licence, "shows": src.shows,
            "um_per_px": src.um_per_px, "frames": frames}
    (args.out_dir / FRAMES_YAML).write_text(yaml.safe_dump(meta, sort_keys=False))
    print(f"{len(frames)} frames -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
