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

"""Import public real focus series with a published best plane into the dataset layout.

    python benchmarks/real_stacks.py SOURCE GIT_DIR DATASET

SOURCE is one of the names below; GIT_DIR a (bare) git directory of its repository, e.g. made by
``git clone --bare https://github.com/<repo>``; DATASET receives ``plates/<source>/<stack>/z_<i>.png``
and a ``stack.yaml`` per stack with ``best_index`` (the published best plane), ``step_um`` (the real
spacing), and ``source``, ``repository``, ``licence``, ``best_from`` (where the best plane is written).
One z index is one image of the series, so "within one image" is |index error| <= 1. Nothing here
downloads anything and no image is stored in this repository (the owners' licences apply).
"""
from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from celegans_autofocus.core.dataset.writer import StackWriter  # noqa: E402


@dataclass
class Series:
    """One focus series: images by z index (one per image), the published best index and where it is stated."""

    name: str
    images: dict[int, np.ndarray]
    best_index: int
    step_um: float
    best_from: str
    shows: str


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _ls(git_dir: Path, folder: str) -> list[str]:
    return _git(git_dir, "ls-tree", "--name-only", "HEAD", folder.rstrip("/") + "/").decode().splitlines()


def _tiff(git_dir: Path, path: str) -> np.ndarray:
    import io

    import tifffile

    return np.asarray(tifffile.imread(io.BytesIO(_git(git_dir, "show", f"HEAD:{path}"))))


def _ics(git_dir: Path, path: str) -> np.ndarray:
    """Read an ICS 2.0 file (header and gzip data in one file), 8-bit grey, as written by sephaCe's microscope."""
    raw = _git(git_dir, "show", f"HEAD:{path}")
    end = raw.index(b"\nend\t\n") + len(b"\nend\t\n")
    header = raw[:end].decode("latin-1")
    sizes = next(([int(v) for v in line.split("\t")[2:]] for line in header.splitlines()
                  if line.startswith("layout\tsizes")), None)
    if sizes is None or sizes[0] != 8:
        raise ValueError(f"{path}: expected an 8-bit ICS image, header sizes {sizes}")
    data = gzip.decompress(raw[end:]) if "compression\tgzip" in header else raw[end:]
    return np.frombuffer(data, dtype=np.uint8)[: sizes[1] * sizes[2]].reshape(sizes[2], sizes[1])


def sephace(git_dir: Path) -> Iterator[Series]:
    """Data/README.txt: per set, 3 "fine" images (in focus and +-10 um) and 3 "init" (in focus and +-25 um)."""
    for s in (1, 2):
        folder = f"Data/Set {s}"
        for kind, um in (("fine", 10.0), ("init", 25.0)):
            files = [f for f in _ls(git_dir, folder) if Path(f).name.startswith(kind + "_")]
            z_um = {f: float(re.search(r"-Z([0-9.]+)\.ics$", f).group(1)) for f in files}
            order = sorted(files, key=z_um.get)
            if len(order) != 3:
                raise ValueError(f"{folder}: expected 3 {kind} images, found {len(order)}")
            yield Series(f"set{s}_{kind}", {i - 1: _ics(git_dir, f) for i, f in enumerate(order)}, 0, um,
                         "Data/README.txt: the middle z of each triple is in focus",
                         "brightfield adherent cells, Nikon TE2000, 1344x1024 8-bit")


_DFNN_ORDER = re.compile(r"Abs(\d{4})\.tif$")
_DFNN_OFF = re.compile(r"Off([MP])(\d)p(\d)um\.tif$")


def dfnn(git_dir: Path) -> Iterator[Series]:
    """data/test/*/stack: z order, best 51 (ReadMe: defocus = (order - 51) * 0.05 um); */single: ON = in focus."""
    for cell in ("microtubules", "mitochondria"):
        folder = f"data/test/{cell}/stack"
        files = [f for f in _ls(git_dir, folder) if _DFNN_ORDER.search(f)]
        images = {int(_DFNN_ORDER.search(f).group(1)) - 51: _tiff(git_dir, f) for f in files}
        yield Series(f"{cell}_stack", images, 0, 0.05, f"{folder}/ReadMe.txt: defocus = (order - 51) x 0.05 um",
                     "light-sheet fluorescence with a multi-depth lattice pattern, 800x512 16-bit")
    for cell in ("microtubules", "mitochondria"):
        folder = f"data/test/{cell}/single"
        files = _ls(git_dir, folder)
        off = {}
        for f in files:
            m = _DFNN_OFF.search(f)
            if m:
                off[f] = (-1 if m.group(1) == "M" else 1) * (int(m.group(2)) * 10 + int(m.group(3)))
        on = sorted(f for f in files if re.search(r"ON(\(1\))?\.tif$", f))
        if cell == "microtubules":
            # ReadMe: ON(1).tif is the in-focus image of all but M0p1, P0p1, M0p3, which belong to ON.tif.
            first = {f: z for f, z in off.items() if z in (-1, 1, -3)}
            refocused = {f: z for f, z in off.items() if z not in (-1, 1, -3)}
            groups = [("a", next(f for f in on if "(1)" not in f), first),
                      ("b", next(f for f in on if "(1)" in f), refocused)]
        else:
            groups = [("", on[0], off)]
        for tag, on_file, members in groups:
            images = {z: _tiff(git_dir, f) for f, z in members.items()}
            images[0] = _tiff(git_dir, on_file)
            yield Series(f"{cell}_single{tag}", images, 0, 0.1,
                         f"{folder}/ReadMe.txt: 'ON' is the in-focus image, Off[M|P]x.y um the preset defocus",
                         "light-sheet fluorescence with a multi-depth lattice pattern, 800x512 16-bit")


def bfautofocus(git_dir: Path) -> Iterator[Series]:
    """src/main/resources/BF.tif, 34 planes 0.3 um apart; best = the plugin's own rule (minimum stdDev)."""
    stack = _tiff(git_dir, "src/main/resources/BF.tif")
    std = stack.reshape(stack.shape[0], -1).std(axis=1)
    yield Series("bf_yeast", dict(enumerate(stack)), int(np.argmin(std)), 0.3,
                 "BFAutofocus.getZfocus: the plane of minimum stdDev (the plugin's rule, not an independent label)",
                 "brightfield fission yeast (MAARS), 116x55 16-bit ROI")


@dataclass(frozen=True)
class Source:
    repo: str
    licence: str
    read: Callable[[Path], Iterator[Series]]


SOURCES = {
    "sephace": Source("bobbyali/sephace", "MIT (noncommercial and research use, per its LICENSE)", sephace),
    "dfnn": Source("ZJUOPTKuangLab/DFNN", "MIT", dfnn),
    "bfautofocus": Source("BioinfoTongLI/BFAutofocus", "none stated (all rights reserved): measurement only",
                          bfautofocus),
}


def import_source(name: str, git_dir: Path, dataset: Path) -> list[Path]:
    """Write every series of source ``name`` under ``dataset/plates/<name>/``; returns the stack directories."""
    src = SOURCES[name]
    commit = _git(git_dir, "rev-parse", "HEAD").decode().strip()
    out = []
    for series in src.read(git_dir):
        meta = {"step_um": series.step_um, "best_index": int(series.best_index), "source": name,
                "repository": f"https://github.com/{src.repo}", "commit": commit, "licence": src.licence,
                "best_from": series.best_from, "shows": series.shows}
        path = Path(dataset) / "plates" / name / series.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with StackWriter(path, meta) as writer:
            for z, image in sorted(series.images.items()):
                writer.add(z, image)
        out.append(path)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", choices=sorted(SOURCES))
    ap.add_argument("git_dir", type=Path, help="bare git directory of the source repository")
    ap.add_argument("dataset", type=Path, help="dataset root to write plates/<source>/ into")
    args = ap.parse_args()
    for path in import_source(args.source, args.git_dir, args.dataset):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
