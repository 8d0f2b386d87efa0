"""The z-stack dataset of DESIGN §2: discovery, image reading, labelling, ``labels.csv`` and splits.

Layout::

    DATASET/plates/<plate>/<stack>/z_<index>.png|.tif|.tiff   one image per sampled motor step
    DATASET/plates/<plate>/<stack>/stack.yaml                 optional (step_um, best_index, parent, ...)
    DATASET/labels.csv                                        written by :func:`label_dataset`

Conventions (the one place they are written down):

- ``z_index`` is in motor steps (1 step = ``step_um`` um, 5 by default). A stack may sample every
  k-th step: the stride is the gcd of the index differences, and an index missing from that grid
  is a *gap* (reported; the stack is still labelled).
- ``offset_steps = best_index - z_index``: the signed motor steps that bring an image into focus;
  positive means move to larger z.
- ``best_index``: a ``best_index`` given in ``stack.yaml`` (hand label or known truth) wins unless
  ``use_stack_best=False`` (label as the paper does); otherwise the z of the focus-measure
  maximum. The measure is computed either way, stored per image in ``measure_value``, and the
  focus curve is checked either way (``ambiguous``).
- ``kind`` is ``crop`` when ``stack.yaml`` names a ``parent`` stack, else ``full``; ``fov_px`` is
  ``stack.yaml``'s ``fov_px`` (empty when absent).
- ``ambiguous`` = 1 when the curve cannot be trusted: flat (range within noise), peak at the end of
  the stack, a second separated peak of similar height, or a missing/skipped image next to the peak.
- Colour images become grayscale by BT.601 luma (:func:`core.images.array_to_gray`), rounded back
  to the file's integer type.

Failure policy (nothing already labelled is lost):

- A bad file (unreadable, corrupt, empty, non-finite, odd size) is reported by name and skipped;
  the stack is labelled from its other images.
- A bad stack (duplicate z index, bad ``stack.yaml``, fewer than :data:`MIN_IMAGES` readable images)
  is reported and its rows from the previous ``labels.csv`` are kept unchanged.
- ``labels.csv`` is replaced atomically (temporary file + ``os.replace``); a ``labels.csv`` that
  cannot be parsed stops the run before anything is written.
- Stacks whose files, ``stack.yaml`` and measure are unchanged since the last ``labels.csv`` reuse
  the measure values stored there instead of reading the images again (``force=True`` recomputes).
"""
from __future__ import annotations

import csv
import math
import os
import re
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import yaml

from .focus import get_measure
from .images import ImageError, array_to_gray, check_image

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
LABEL_COLUMNS = ("plate", "stack", "file", "z_index", "best_index", "offset_steps", "measure",
                 "measure_value", "kind", "fov_px", "ambiguous")
LABELS_FILE = "labels.csv"
MIN_IMAGES = 3
DOF_STEPS = 16.0
#: ambiguity thresholds (see :func:`focus_curve_ambiguity`)
FLAT_SNR = 6.0
FLAT_REL = 1e-3
PEAK_PROMINENCE_FRAC = 0.25
SECOND_PEAK_FRAC = 0.5

_Z_NAME = re.compile(r"^z_([+-]?\d+)$")


class DatasetError(ValueError):
    """The dataset as a whole cannot be used (missing directory, unreadable labels.csv)."""


class StackError(ValueError):
    """One stack cannot be labelled; the message names it and the reason."""


# ----------------------------------------------------------------------------- images

def read_image(path: Path) -> np.ndarray:
    """Read one z image as a 2-D grayscale array (uint8/uint16 kept; float TIFF allowed if finite).

    OpenCV decodes first (PNG/TIFF, 8/16 bit, grey/RGB/RGBA); tifffile is the fallback for TIFFs
    OpenCV cannot read. Raises :class:`ImageError` whose message starts with the path.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    image = _imdecode_quiet(data)
    if image is None and path.suffix.lower() in (".tif", ".tiff"):
        image = _read_tiff(path)
    if image is None:
        raise ImageError(f"{path}: corrupt or unsupported image file")
    if image.dtype.kind not in "uif" or image.dtype == np.bool_:
        raise ImageError(f"{path}: unsupported pixel type {image.dtype}")
    try:
        check_image(image)
        gray = array_to_gray(image)
        check_image(gray)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    if image.dtype.kind in "ui" and gray.dtype != image.dtype:
        info = np.iinfo(image.dtype)
        gray = np.clip(np.rint(gray), info.min, info.max).astype(image.dtype)
    return gray


def _imdecode_quiet(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own log lines for corrupt files (we report them by name)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        image = np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise ImageError(f"{path}: corrupt or unsupported TIFF ({exc})") from None
    if image.ndim < 2:
        raise ImageError(f"{path}: corrupt or unsupported TIFF (no 2-D image in it)")
    if image.ndim == 3 and image.shape[2] in (3, 4):  # tifffile gives RGB(A); array_to_gray wants BGR(A)
        image = image[:, :, [2, 1, 0, 3][: image.shape[2]]]
    return image


def write_image(path: Path, gray: np.ndarray) -> None:
    """Write a grayscale z image: PNG for 8/16-bit integers, TIFF (tifffile) otherwise."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        if gray.dtype not in (np.uint8, np.uint16):
            raise ImageError(f"{path}: PNG holds uint8/uint16, not {gray.dtype}")
        if not cv2.imwrite(str(path), gray):
            raise ImageError(f"{path}: cannot write image")
    else:
        import tifffile

        tifffile.imwrite(path, gray)


def image_suffix(gray: np.ndarray) -> str:
    """The file suffix :func:`write_image` uses for an array of this type."""
    return ".png" if gray.dtype in (np.uint8, np.uint16) else ".tif"


# ----------------------------------------------------------------------------- discovery

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
        for stack_dir in stacks:
            try:
                found.stacks.append(_scan_stack(plate.name, stack_dir, found.warnings))
            except StackError as exc:
                found.failed[(plate.name, stack_dir.name)] = str(exc)
    return found


def _scan_stack(plate: str, stack_dir: Path, warnings: list[str]) -> Stack:
    files: dict[int, Path] = {}
    for path in sorted(stack_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = _Z_NAME.match(path.stem)
        if match is None:
            warnings.append(f"{path}: ignored, image files must be named z_<integer index>{path.suffix}")
            continue
        z = int(match.group(1))
        if z in files:
            raise StackError(f"{stack_dir}: duplicate z index {z}: {files[z].name} and {path.name}")
        files[z] = path
    if not files:
        raise StackError(f"{stack_dir}: no z_<index>.png/.tif images")
    meta_path = stack_dir / "stack.yaml"
    meta = read_stack_yaml(meta_path) if meta_path.exists() else {}
    stack = Stack(plate, stack_dir.name, stack_dir, dict(sorted(files.items())), meta)
    if stack.missing_z:
        warnings.append(f"{stack_dir}: gap in the stack (stride {stack.stride_steps} steps), "
                        f"missing z {_short_list(stack.missing_z)}")
    return stack


def _short_list(values: list[int], limit: int = 8) -> str:
    text = ", ".join(map(str, values[:limit]))
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")


# ----------------------------------------------------------------------------- labels.csv

@dataclass(frozen=True)
class LabelRow:
    """One row of ``labels.csv``; ``file`` is the name inside ``plates/<plate>/<stack>/``."""

    plate: str
    stack: str
    file: str
    z_index: int
    best_index: int
    offset_steps: int
    measure: str
    measure_value: float
    kind: str
    fov_px: int | None
    ambiguous: bool

    def path(self, dataset: Path) -> Path:
        return Path(dataset) / "plates" / self.plate / self.stack / self.file

    def to_csv(self) -> dict[str, str]:
        return {"plate": self.plate, "stack": self.stack, "file": self.file, "z_index": str(self.z_index),
                "best_index": str(self.best_index), "offset_steps": str(self.offset_steps),
                "measure": self.measure, "measure_value": repr(float(self.measure_value)), "kind": self.kind,
                "fov_px": "" if self.fov_px is None else str(self.fov_px), "ambiguous": str(int(self.ambiguous))}

    @classmethod
    def from_csv(cls, rec: dict[str, str]) -> "LabelRow":
        row = cls(plate=rec["plate"], stack=rec["stack"], file=rec["file"], z_index=int(rec["z_index"]),
                  best_index=int(rec["best_index"]), offset_steps=int(rec["offset_steps"]),
                  measure=rec["measure"], measure_value=float(rec["measure_value"]), kind=rec["kind"],
                  fov_px=int(rec["fov_px"]) if rec["fov_px"] else None,
                  ambiguous=bool(int(rec["ambiguous"])))
        if row.kind not in ("full", "crop"):
            raise ValueError(f"kind must be full or crop, got {row.kind!r}")
        if row.offset_steps != row.best_index - row.z_index:
            raise ValueError(f"offset_steps {row.offset_steps} != best_index - z_index")
        return row


def read_labels(path: Path) -> list[LabelRow]:
    """Parse ``labels.csv``; :class:`DatasetError` names the file and line of any bad row."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(LABEL_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{path}: missing columns {sorted(missing)}")
            rows = []
            for rec in reader:
                try:
                    rows.append(LabelRow.from_csv(rec))
                except (TypeError, ValueError) as exc:
                    raise DatasetError(f"{path}, line {reader.line_num}: {exc}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read labels ({exc})") from None
    return rows


def write_labels(path: Path, rows: Iterable[LabelRow]) -> None:
    """Write ``labels.csv`` atomically, sorted by plate, stack and z."""
    path = Path(path)
    ordered = sorted(rows, key=lambda r: (r.plate, r.stack, r.z_index))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
            writer.writeheader()
            writer.writerows(r.to_csv() for r in ordered)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- focus curve

def _prominence(values: np.ndarray, i: int) -> float:
    """Topographic prominence of the interior maximum at ``i``: its height above the higher of the
    two lowest points separating it from higher ground (or the curve's ends)."""
    v = values[i]
    bases = []
    for side in (values[i::-1], values[i:]):
        higher = np.nonzero(side > v)[0]
        bases.append(side[: higher[0] if higher.size else side.size].min())
    return float(v - max(bases))


def focus_curve_ambiguity(z_steps: np.ndarray, values: np.ndarray, holes: Iterable[int] = (),
                          dof_steps: float = DOF_STEPS) -> str | None:
    """Why a focus curve's maximum cannot be trusted, or None when it is a clear single peak.

    ``holes``: z indexes missing or skipped in the stack. Checks, in order: flat (range <=
    FLAT_SNR x noise, the noise from the MAD of second differences, or <= FLAT_REL x |max|); peak
    at either end; another interior local maximum >= dof_steps away, with prominence >=
    PEAK_PROMINENCE_FRAC x range and height >= SECOND_PEAK_FRAC x the highest (heights above the
    minimum); a hole next to the peak. A rise at an end of the curve is not counted as a second
    peak (it is typical of far defocus, where phase contrast grows).
    """
    z = np.asarray(z_steps)
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    best = int(np.argmax(v))
    span = float(v.max() - v.min())
    noise = 0.0
    if n >= 5:
        d2 = v[:-2] - 2 * v[1:-1] + v[2:]
        noise = 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6)
    if span <= max(FLAT_SNR * noise, FLAT_REL * float(np.abs(v).max())):
        return f"flat focus curve (range {span:.3g}, noise {noise:.3g})"
    if best in (0, n - 1):
        return f"focus peak at the end of the stack (z={z[best]})"
    lows = v - v.min()
    for i in range(1, n - 1):
        is_max = v[i] > v[i - 1] and v[i] >= v[i + 1]
        if (i != best and is_max and abs(int(z[i]) - int(z[best])) >= dof_steps
                and lows[i] >= SECOND_PEAK_FRAC * span
                and _prominence(v, i) >= max(PEAK_PROMINENCE_FRAC * span, FLAT_SNR * noise)):
            return f"two focus peaks, z={z[best]} and z={z[i]} ({lows[i] / span:.0%} as high)"
    stride = int(np.min(np.diff(z))) if n > 1 else 1
    near = [h for h in holes if abs(h - int(z[best])) <= stride]
    if near:
        return f"missing image next to the focus peak (z={z[best]}, missing {near})"
    return None


# ----------------------------------------------------------------------------- labelling

@dataclass
class Measured:
    """Focus-measure values of one stack's readable images, and the files that were skipped."""

    stack: Stack
    measure: str
    values: dict[int, float]
    skipped: list[str]


def measure_stack(stack: Stack, measure: str, on_image: Callable[[], None] | None = None) -> Measured:
    """The focus measure of every readable image of ``stack`` (full resolution); bad files skipped by name."""
    fn = get_measure(measure)
    values: dict[int, float] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    skipped: list[str] = []
    for z, path in stack.files.items():
        try:
            image = read_image(path)
            value = fn(image)
            if not math.isfinite(value):
                raise ImageError(f"{path}: {measure} is not finite ({value})")
            values[z], shapes[z] = value, image.shape
        except ImageError as exc:
            skipped.append(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}")
        if on_image is not None:
            on_image()
    if shapes:
        shape = Counter(shapes.values()).most_common(1)[0][0]
        for z in [z for z, s in shapes.items() if s != shape]:
            skipped.append(f"{stack.files[z]}: size {shapes[z][1]}x{shapes[z][0]} differs from the "
                           f"stack's {shape[1]}x{shape[0]}")
            del values[z]
    return Measured(stack, measure, values, skipped)


@dataclass
class StackResult:
    """The labels of one stack and what went wrong with individual files."""

    stack: Stack
    rows: list[LabelRow]
    skipped: list[str]
    best_from: str  # "stack.yaml" or the measure name
    ambiguous_reason: str | None


def label_measured(measured: Measured, use_stack_best: bool = True) -> StackResult:
    """Labels from measure values: best_index from stack.yaml (if given and ``use_stack_best``)
    or the measure's argmax; the curve's ambiguity either way. :class:`StackError` if too few images."""
    stack, values = measured.stack, measured.values
    if len(values) < MIN_IMAGES:
        raise StackError(f"{stack.path}: only {len(values)} readable image(s), need at least {MIN_IMAGES}")
    z = np.array(sorted(values))
    curve = np.array([values[k] for k in z])
    holes = sorted(set(stack.missing_z) | (set(stack.files) - set(values)))
    reason = focus_curve_ambiguity(z, curve, holes)
    if use_stack_best and "best_index" in stack.meta:
        best, best_from = int(stack.meta["best_index"]), "stack.yaml"
    else:
        best, best_from = int(z[int(np.argmax(curve))]), measured.measure
    rows = [LabelRow(stack.plate, stack.name, stack.files[k].name, int(k), best, best - int(k), measured.measure,
                     float(values[k]), stack.kind, stack.fov_px, reason is not None) for k in z]
    return StackResult(stack, rows, measured.skipped, best_from, reason)


def label_stack(stack: Stack, measure: str, use_stack_best: bool = True,
                on_image: Callable[[], None] | None = None) -> StackResult:
    """Measure and label one stack (see the module docstring). Raises :class:`StackError` when it cannot."""
    return label_measured(measure_stack(stack, measure, on_image), use_stack_best)


@dataclass
class LabelReport:
    """What :func:`label_dataset` did. ``rows`` is exactly what was written to labels.csv;
    ``labelled`` holds every stack labelled this run, ``cached`` those whose measure values were reused."""

    rows: list[LabelRow] = field(default_factory=list)
    labelled: list[StackResult] = field(default_factory=list)
    cached: list[tuple[str, str]] = field(default_factory=list)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    kept_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)

    @property
    def ambiguous_stacks(self) -> list[tuple[str, str]]:
        return sorted({(r.plate, r.stack) for r in self.rows if r.ambiguous})

    @property
    def n_stacks(self) -> int:
        return len({(r.plate, r.stack) for r in self.rows})


def _cached_values(stack: Stack, rows: list[LabelRow], measure: str, labels_mtime_ns: int) -> Measured | None:
    """The measure values of ``rows`` when the stack is unchanged since labels.csv was written."""
    if not rows or any(r.measure != measure for r in rows):
        return None
    if {r.file for r in rows} != {p.name for p in stack.files.values()}:
        return None
    paths = list(stack.files.values()) + [stack.path / "stack.yaml", stack.path]
    if any(p.stat().st_mtime_ns >= labels_mtime_ns for p in paths if p.exists()):
        return None
    return Measured(stack, measure, {r.z_index: r.measure_value for r in rows}, [])


def label_dataset(dataset: Path, measure: str, use_stack_best: bool = True, force: bool = False,
                  workers: int = 1, progress: bool = True) -> LabelReport:
    """Label every stack of ``dataset`` and write ``labels.csv`` atomically; see the module docstring.

    Unchanged stacks reuse the measure values stored in labels.csv (``force`` recomputes them);
    their labels are derived again, so ``use_stack_best`` applies to them too.
    """
    from tqdm import tqdm

    dataset = Path(dataset)
    get_measure(measure)
    found = discover(dataset)
    labels_path = dataset / LABELS_FILE
    old: dict[tuple[str, str], list[LabelRow]] = {}
    labels_mtime_ns = 0
    if labels_path.exists():
        for row in read_labels(labels_path):
            old.setdefault((row.plate, row.stack), []).append(row)
        labels_mtime_ns = labels_path.stat().st_mtime_ns
    if not found.stacks and not found.failed:
        raise DatasetError(f"no stacks found under {dataset / 'plates'}")

    report = LabelReport(warnings=list(found.warnings), failed=dict(found.failed))
    measured: list[Measured] = []
    todo = []
    for stack in found.stacks:
        cached = None if force else _cached_values(stack, old.get(stack.key, []), measure, labels_mtime_ns)
        if cached is None:
            todo.append(stack)
        else:
            measured.append(cached)
            report.cached.append(stack.key)
    with tqdm(total=sum(len(s.files) for s in todo), unit="img", desc="label", disable=not progress) as bar:
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for stack, res in zip(todo, pool.map(measure_stack, todo, [measure] * len(todo))):
                    bar.update(len(stack.files))
                    measured.append(res)
        else:
            measured.extend(measure_stack(stack, measure, on_image=lambda: bar.update(1)) for stack in todo)
    for m in measured:
        report.skipped_files.extend(m.skipped)
        try:
            result = label_measured(m, use_stack_best)
        except StackError as exc:
            report.failed[m.stack.key] = str(exc)
            continue
        report.rows.extend(result.rows)
        report.labelled.append(result)
    for key in report.failed:
        report.kept_rows += len(old.get(key, []))
        report.rows.extend(old.get(key, []))
    on_disk = {s.key for s in found.stacks} | set(found.failed)
    for key in sorted(set(old) - on_disk):
        report.warnings.append(f"dropped {len(old[key])} label rows of {key[0]}/{key[1]}: "
                               f"the stack directory no longer exists")
    write_labels(labels_path, report.rows)
    return report


# ----------------------------------------------------------------------------- splits

def split_by_plate(plates: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split plate ids into (train, validation) so that no plate is in both.

    At least one plate goes to each side; the choice is a seeded shuffle of the sorted unique ids.
    Raises ValueError when fewer than two plates exist or ``val_fraction`` is not in (0, 1).
    """
    unique = sorted(set(plates))
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if len(unique) < 2:
        raise ValueError(f"cannot split {len(unique)} plate(s) {unique} into training and validation "
                         "without leaking a plate: need at least 2 plates")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = min(max(1, round(val_fraction * len(unique))), len(unique) - 1)
    val = sorted(unique[i] for i in order[:n_val])
    train = sorted(unique[i] for i in order[n_val:])
    return train, val
