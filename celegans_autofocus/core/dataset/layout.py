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

"""Where the dataset's stacks are: ``DATASET/plates/<plate>/<stack>/z_<index>.*`` and ``stack.yaml``."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

from ..sensor import STEP_UM
from .errors import DatasetError, StackError
from .io import IMAGE_SUFFIXES

_Z_NAME = re.compile(r"^z_([+-]?\d+)$")


def _checked_name(kind: str, name: str) -> str:
    """Return ``name`` if it names one visible directory; else :class:`DatasetError` naming ``kind``.

    Refused: empty, ``.``, ``..``, a path (a separator; an absolute one too) and a hidden name (``.x``: the
    dataset's readers skip it), any of which would put the images where nothing reads them, or outside the dataset.
    """
    if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise DatasetError(f"{kind} name {name!r} must be one directory name: not empty, no '/', not starting "
                           "with '.'")
    return name


def plate_dir(dataset: Path, plate: str) -> Path:
    """``DATASET/plates/<plate>``; :class:`DatasetError` unless ``plate`` is one plain directory name."""
    return Path(dataset) / "plates" / _checked_name("plate", plate)


def stack_dir(dataset: Path, plate: str, stack: str) -> Path:
    """``DATASET/plates/<plate>/<stack>``; :class:`DatasetError` unless both are plain directory names."""
    return plate_dir(dataset, plate) / _checked_name("stack", stack)


def step_um(meta: Mapping) -> float:
    """Micrometres per z step of a stack: ``stack.yaml``'s ``step_um``, else the sensor default."""
    return float(meta.get("step_um", STEP_UM))


@dataclass(frozen=True)
class Stack:
    """One stack directory: its z files (sorted by z) and its validated ``stack.yaml``."""

    plate: str
    name: str
    path: Path
    files: dict[int, Path]
    meta: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.plate, self.name)

    @property
    def z_steps(self) -> list[int]:
        return sorted(self.files)

    @property
    def stride_steps(self) -> int:
        z = self.z_steps
        return reduce(math.gcd, (b - a for a, b in zip(z, z[1:])), 0) or 1

    @property
    def missing_z(self) -> list[int]:
        """Indexes absent from the stack's regular grid (gaps)."""
        z = self.z_steps
        return sorted(set(range(z[0], z[-1] + 1, self.stride_steps)) - set(z)) if z else []

    @property
    def kind(self) -> str:
        """``crop`` when ``stack.yaml`` names a parent stack, else ``full``."""
        return "crop" if "parent" in self.meta else "full"

    @property
    def fov_px(self) -> int | None:
        return self.meta.get("fov_px")


@dataclass
class Discovery:
    """What :func:`discover` found: usable stacks, stacks that failed, and warnings."""

    stacks: list[Stack] = field(default_factory=list)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def read_stack_yaml(path: Path) -> dict:
    """Parse and check a ``stack.yaml``; :class:`StackError` names the file and the bad key."""
    try:
        meta = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StackError(f"{path}: cannot read stack.yaml ({exc})") from None
    if not isinstance(meta, dict):
        raise StackError(f"{path}: stack.yaml must be a mapping of key: value")
    for key in ("best_index", "true_best_index"):
        if key in meta and not _is_int(meta[key]):
            raise StackError(f"{path}: {key} must be an integer z index, got {meta[key]!r}")
    for key in ("step_um", "um_per_px"):
        value = meta.get(key, 1.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise StackError(f"{path}: {key} must be a positive number, got {value!r}")
    if "fov_px" in meta and not (_is_int(meta["fov_px"]) and meta["fov_px"] > 0):
        raise StackError(f"{path}: fov_px must be a positive integer, got {meta['fov_px']!r}")
    if "window_px" in meta:
        w = meta["window_px"]
        if not (isinstance(w, list) and len(w) == 4 and all(_is_int(v) for v in w)):
            raise StackError(f"{path}: window_px must be [x0, y0, w, h] integers, got {w!r}")
    return meta


def plates_dir(dataset: Path) -> Path:
    """``DATASET/plates``, with a clear :class:`DatasetError` when either is missing."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise DatasetError(f"dataset directory {dataset} does not exist")
    plates = dataset / "plates"
    if not plates.is_dir():
        raise DatasetError(f"{plates} does not exist: a dataset holds plates/<plate>/<stack>/z_<index>.png")
    return plates


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def discover(dataset: Path) -> Discovery:
    """Find every stack under ``DATASET/plates``. Raises :class:`DatasetError` if the layout is absent."""
    found = Discovery()
    for plate in _subdirs(plates_dir(dataset)):
        stacks = _subdirs(plate)
        if not stacks:
            found.warnings.append(f"{plate}: plate holds no stack directories")
        for path in stacks:
            try:
                found.stacks.append(_scan_stack(plate.name, path, found.warnings))
            except StackError as exc:
                found.failed[(plate.name, path.name)] = str(exc)
    return found


def _scan_stack(plate: str, path: Path, warnings: list[str]) -> Stack:
    files: dict[int, Path] = {}
    for file in sorted(path.iterdir()):
        if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = _Z_NAME.match(file.stem)
        if match is None:
            warnings.append(f"{file}: ignored, image files must be named z_<integer index>{file.suffix}")
            continue
        z = int(match.group(1))
        if z in files:
            raise StackError(f"{path}: duplicate z index {z}: {files[z].name} and {file.name}")
        files[z] = file
    if not files:
        raise StackError(f"{path}: no z_<index>.png/.tif images")
    meta_path = path / "stack.yaml"
    meta = read_stack_yaml(meta_path) if meta_path.exists() else {}
    stack = Stack(plate, path.name, path, dict(sorted(files.items())), meta)
    if stack.missing_z:
        warnings.append(f"{path}: gap in the stack (stride {stack.stride_steps} steps), "
                        f"missing z {_short_list(stack.missing_z)}")
    return stack


def _short_list(values: list[int], limit: int = 8) -> str:
    """``1, 2, 3, ... (n in all)``: a list short enough for one message."""
    text = ", ".join(map(str, values[:limit]))
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")
