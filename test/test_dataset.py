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

"""Tests of the z-stack dataset (core.dataset).

Reading, labelling by hand-checkable values, bad input, atomic labels, best index, splits, the crop writer.
"""
import csv
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import yaml

from celegans_autofocus.core import atomic
from celegans_autofocus.core.dataset.errors import DatasetError
from celegans_autofocus.core.dataset.io import read_image
from celegans_autofocus.core.dataset.labelling import label_dataset
from celegans_autofocus.core.dataset.labels import (
    LABEL_COLUMNS, BestIndex, LabelRow, best_index, focus_curve_ambiguity, read_labels, write_labels,
)
from celegans_autofocus.core.dataset.layout import discover, plate_dir, stack_dir
from celegans_autofocus.core.dataset.splits import split_by_plate
from celegans_autofocus.core.dataset.writer import StackWriter
from celegans_autofocus.core.images import ImageError


def banded(amplitude: float, size: int = 16) -> np.ndarray:
    """Rows alternate 100 + a and 100 - a: Vollath F5 = a^2 exactly (mean 100, x-neighbours equal)."""
    rows = np.where(np.arange(size) % 2 == 0, 100 + amplitude, 100 - amplitude)
    return np.repeat(rows[:, None], size, axis=1).astype(np.uint8)


def make_stack(root: Path, plate: str, stack: str, amplitudes: dict[int, float], meta: dict | None = None,
               suffix: str = ".png") -> Path:
    d = root / "plates" / plate / stack
    d.mkdir(parents=True, exist_ok=True)
    for z, a in amplitudes.items():
        cv2.imwrite(str(d / f"z_{z}{suffix}"), banded(a))
    if meta is not None:
        (d / "stack.yaml").write_text(yaml.safe_dump(meta))
    return d


PEAK_AT_1 = {-3: 1, -2: 2, -1: 3, 0: 5, 1: 8, 2: 4, 3: 2}


def rows_of(report, stack="s1"):
    return sorted((r for r in report.rows if r.stack == stack), key=lambda r: r.z_index)


def test_tiny_stack_labels_are_hand_checkable(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    report = label_dataset(tmp_path, "vollath_f5")
    rows = rows_of(report)
    assert [r.z_index for r in rows] == [-3, -2, -1, 0, 1, 2, 3]
    assert [r.measure_value for r in rows] == pytest.approx([1, 4, 9, 25, 64, 16, 4])
    assert {r.best_index for r in rows} == {1}
    # the sign convention: offset = best - z, the steps to move to reach focus
    assert [r.offset_steps for r in rows] == [4, 3, 2, 1, 0, -1, -2]
    assert not any(r.ambiguous for r in rows)
    assert {(r.kind, r.fov_px, r.measure) for r in rows} == {("full", None, "vollath_f5")}
    with (tmp_path / "labels.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == LABEL_COLUMNS
        first = next(reader)
    assert first["file"] == "z_-3.png" and first["offset_steps"] == "4" and first["ambiguous"] == "0"
    assert read_labels(tmp_path / "labels.csv") == sorted(report.rows, key=lambda r: (r.plate, r.stack, r.z_index))


def test_stride_stack_has_no_gap_and_offsets_in_steps(tmp_path):
    make_stack(tmp_path, "p1", "s1", {z * 4: a for z, a in PEAK_AT_1.items()})
    found = discover(tmp_path)
    assert found.stacks[0].stride_steps == 4 and found.stacks[0].missing_z == [] and not found.warnings
    rows = rows_of(label_dataset(tmp_path, "vollath_f5"))
    assert rows[0].z_index == -12 and rows[0].best_index == 4 and rows[0].offset_steps == 16


def test_stack_yaml_best_index_wins_and_measure_is_kept(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1, meta={"best_index": -1, "step_um": 5.0})
    report = label_dataset(tmp_path, "vollath_f5")
    rows = rows_of(report)
    assert {r.best_index for r in rows} == {-1}
    assert rows[0].offset_steps == 2 and rows[0].measure_value == pytest.approx(1)
    assert report.labelled[0].best_from == "stack.yaml"


def test_from_measure_ignores_stack_yaml_even_for_reused_values(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1, meta={"best_index": -1})
    label_dataset(tmp_path, "vollath_f5")
    report = label_dataset(tmp_path, "vollath_f5", use_stack_best=False)
    assert report.cached == [("p1", "s1")]  # values reused, labels derived again
    assert {r.best_index for r in report.rows} == {1} and report.labelled[0].best_from == "vollath_f5"


def test_full_stack_with_fov_in_yaml_stays_full(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1, meta={"fov_px": 16, "window_px": [0, 0, 16, 16]})
    rows = rows_of(label_dataset(tmp_path, "vollath_f5"))
    assert {(r.kind, r.fov_px) for r in rows} == {("full", 16)}


def test_crop_stack_kind_and_fov_from_stack_yaml(tmp_path):
    make_stack(tmp_path, "p1", "s1__crop500_w0", PEAK_AT_1,
               meta={"parent": "s1", "fov_px": 500, "window_px": [0, 0, 500, 500]})
    rows = rows_of(label_dataset(tmp_path, "vollath_f5"), "s1__crop500_w0")
    assert {(r.kind, r.fov_px) for r in rows} == {("crop", 500)}


def test_reads_16bit_tiff_and_rgb_png(tmp_path):
    img16 = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    tifffile.imwrite(tmp_path / "a.tif", img16)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), img16)
    cv2.imwrite(str(tmp_path / "b.png"), img16)
    out = read_image(tmp_path / "b.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img16)
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[..., 2] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    gray = read_image(tmp_path / "c.png")
    assert gray.shape == (3, 4) and gray.dtype == np.uint8
    assert int(gray[0, 0]) == round(0.299 * 200)
    rgb16 = np.zeros((3, 4, 3), np.uint16)
    rgb16[..., 0] = 60000  # red, in tifffile's RGB order
    tifffile.imwrite(tmp_path / "d.tif", rgb16, photometric="rgb")
    assert int(read_image(tmp_path / "d.tif")[0, 0]) == round(0.299 * 60000)


@pytest.mark.parametrize("content,message", [
    (b"", "empty file"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "corrupt"),
])
def test_bad_bytes_are_named(tmp_path, content, message):
    path = tmp_path / "z_0.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as exc:
        read_image(path)
    assert str(path) in str(exc.value)


def test_nonfinite_and_zero_size_tiffs_are_named(tmp_path):
    tifffile.imwrite(tmp_path / "n.tif", np.array([[1.0, np.inf], [0.0, 2.0]], np.float32))
    with pytest.raises(ImageError, match="non-finite") as exc:
        read_image(tmp_path / "n.tif")
    assert "n.tif" in str(exc.value)
    with pytest.warns(UserWarning):
        tifffile.imwrite(tmp_path / "e.tif", np.zeros((0, 5), np.uint8))
    with pytest.raises(ImageError, match="empty image") as exc:
        read_image(tmp_path / "e.tif")
    assert "e.tif" in str(exc.value)


def test_missing_directories_are_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as exc:
        label_dataset(tmp_path / "nope", "vollath_f5")
    assert "nope" in str(exc.value)
    with pytest.raises(DatasetError, match="plates"):
        label_dataset(tmp_path, "vollath_f5")
    (tmp_path / "plates").mkdir()
    with pytest.raises(DatasetError, match="no stacks"):
        label_dataset(tmp_path, "vollath_f5")
    assert not (tmp_path / "labels.csv").exists()


@pytest.mark.parametrize("extra", ["z_1.tif", "z_01.png", "z_+1.png"])
def test_duplicate_z_fails_the_stack_only(tmp_path, extra):
    d = make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    make_stack(tmp_path, "p1", "s2", PEAK_AT_1)
    cv2.imwrite(str(d / extra), banded(3))
    report = label_dataset(tmp_path, "vollath_f5")
    msg = report.failed[("p1", "s1")]
    assert "duplicate z index 1" in msg and extra in msg and "s1" in msg
    assert report.n_stacks == 1 and rows_of(report, "s2")


def test_gap_is_reported_and_stack_still_labelled(tmp_path):
    amps = dict(PEAK_AT_1)
    del amps[-2]
    make_stack(tmp_path, "p1", "s1", amps)
    report = label_dataset(tmp_path, "vollath_f5")
    assert any("gap" in w and "missing z -2" in w and "s1" in w for w in report.warnings)
    rows = rows_of(report)
    assert len(rows) == 6 and rows[0].best_index == 1 and not rows[0].ambiguous


def test_gap_next_to_the_peak_is_ambiguous(tmp_path):
    amps = dict(PEAK_AT_1)
    del amps[2]
    make_stack(tmp_path, "p1", "s1", amps)
    report = label_dataset(tmp_path, "vollath_f5")
    assert all(r.ambiguous for r in rows_of(report))
    assert "missing image next to the focus peak" in report.labelled[0].ambiguous_reason


def test_corrupt_file_is_skipped_by_name_and_rest_labelled(tmp_path):
    d = make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    (d / "z_-3.png").write_bytes(b"not a png at all")
    tifffile.imwrite(d / "z_-2.png.tif", np.zeros((2, 2), np.uint8))  # not named z_<int>: ignored, warned
    report = label_dataset(tmp_path, "vollath_f5")
    assert len(report.skipped_files) == 1 and "z_-3.png" in report.skipped_files[0]
    assert any("z_-2.png.tif" in w and "ignored" in w for w in report.warnings)
    rows = rows_of(report)
    assert [r.z_index for r in rows] == [-2, -1, 0, 1, 2, 3] and rows[0].best_index == 1


def test_odd_sized_image_is_skipped(tmp_path):
    d = make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    cv2.imwrite(str(d / "z_3.png"), np.zeros((8, 8), np.uint8))
    report = label_dataset(tmp_path, "vollath_f5")
    assert any("z_3.png" in m and "differs" in m for m in report.skipped_files)
    assert len(rows_of(report)) == 6


def test_old_labels_kept_when_a_stack_turns_corrupt(tmp_path):
    d1 = make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    make_stack(tmp_path, "p2", "s2", PEAK_AT_1)
    label_dataset(tmp_path, "vollath_f5")
    before = [r for r in read_labels(tmp_path / "labels.csv") if r.stack == "s1"]
    for path in d1.glob("z_*.png"):
        path.write_bytes(b"garbage")
    report = label_dataset(tmp_path, "vollath_f5")
    assert "only 0 readable" in report.failed[("p1", "s1")]
    assert report.kept_rows == 7
    after = read_labels(tmp_path / "labels.csv")
    assert [r for r in after if r.stack == "s1"] == before
    assert len([r for r in after if r.stack == "s2"]) == 7


def test_failed_write_leaves_previous_labels_file(tmp_path, monkeypatch):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    label_dataset(tmp_path, "vollath_f5")
    original = (tmp_path / "labels.csv").read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        label_dataset(tmp_path, "brenner")
    assert (tmp_path / "labels.csv").read_bytes() == original
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".labels")] == []


def test_unparseable_labels_file_is_named_and_untouched(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    bad = "plate,stack,file\np1,s1,z_0.png\n"
    (tmp_path / "labels.csv").write_text(bad)
    with pytest.raises(DatasetError, match="missing columns"):
        label_dataset(tmp_path, "vollath_f5")
    assert (tmp_path / "labels.csv").read_text() == bad


def test_bad_stack_yaml_fails_that_stack(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1, meta={"best_index": "two"})
    make_stack(tmp_path, "p1", "s2", PEAK_AT_1, meta={"step_um": float("nan")})
    report = label_dataset(tmp_path, "vollath_f5")
    assert "best_index" in report.failed[("p1", "s1")] and "stack.yaml" in report.failed[("p1", "s1")]
    assert "step_um" in report.failed[("p1", "s2")]


def test_unchanged_stacks_are_reused_and_changes_relabelled(tmp_path):
    d = make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    label_dataset(tmp_path, "vollath_f5")
    again = label_dataset(tmp_path, "vollath_f5")
    assert again.cached == [("p1", "s1")] and len(again.labelled) == 1
    assert label_dataset(tmp_path, "laplacian_variance").labelled  # another measure recomputes
    time.sleep(0.01)
    cv2.imwrite(str(d / "z_-1.png"), banded(20))
    changed = label_dataset(tmp_path, "laplacian_variance")
    assert changed.cached == [] and rows_of(changed)[0].best_index == -1


def test_rows_of_deleted_stacks_are_dropped_with_a_warning(tmp_path):
    d = make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    make_stack(tmp_path, "p1", "s2", PEAK_AT_1)
    label_dataset(tmp_path, "vollath_f5")
    for p in d.iterdir():
        p.unlink()
    d.rmdir()
    report = label_dataset(tmp_path, "vollath_f5")
    assert any("p1/s1" in w and "no longer exists" in w for w in report.warnings)
    assert {r.stack for r in read_labels(tmp_path / "labels.csv")} == {"s2"}


def test_process_pool_gives_the_same_labels(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    make_stack(tmp_path, "p1", "s2", {z: a + 1 for z, a in PEAK_AT_1.items()})
    serial = label_dataset(tmp_path, "vollath_f5", force=True).rows
    pooled = label_dataset(tmp_path, "vollath_f5", force=True, workers=2).rows
    assert sorted(serial, key=str) == sorted(pooled, key=str)


def test_write_labels_sorts_and_round_trips(tmp_path):
    row = LabelRow("p", "s", "z_2.png", 2, 5, 3, "brenner", 0.1 + 0.2, "crop", 750, True)
    other = LabelRow("p", "s", "z_-1.png", -1, 5, 6, "brenner", 1e-300, "crop", 750, True)
    write_labels(tmp_path / "labels.csv", [row, other])
    assert read_labels(tmp_path / "labels.csv") == [other, row]


# --------------------------------------------------------------------------- ambiguity

def test_ambiguity_clear_peak_is_trusted():
    z = np.arange(-40, 41)
    assert focus_curve_ambiguity(z, np.exp(-((z - 5) / 8.0) ** 2)) is None


def test_ambiguity_flat_curve():
    z = np.arange(-40, 41)
    noise = np.random.default_rng(0).normal(0, 1.0, z.size)
    assert "flat" in focus_curve_ambiguity(z, 1000 + noise + 0.5 * np.exp(-(z / 8.0) ** 2))
    assert "flat" in focus_curve_ambiguity(z, np.full(z.size, 3.0))


def test_ambiguity_two_separated_peaks():
    z = np.arange(-40, 41)
    curve = np.exp(-((z - 20) / 6.0) ** 2) + 0.85 * np.exp(-((z + 20) / 6.0) ** 2)
    reason = focus_curve_ambiguity(z, curve)
    assert "two focus peaks" in reason and "z=20" in reason and "z=-20" in reason
    small_second = np.exp(-((z - 20) / 6.0) ** 2) + 0.4 * np.exp(-((z + 20) / 6.0) ** 2)
    assert focus_curve_ambiguity(z, small_second) is None
    shoulder = np.exp(-((z - 10) / 20.0) ** 2) + 0.25 * np.exp(-((z + 8) / 2.0) ** 2)  # 69% high, shallow dip
    assert focus_curve_ambiguity(z, shoulder) is None
    end_rise = np.exp(-((z - 5) / 6.0) ** 2) + 0.6 * (z / 40.0) ** 8  # far-defocus rise at the end
    assert focus_curve_ambiguity(z, end_rise) is None


def test_ambiguity_peak_at_end():
    z = np.arange(0, 30)
    assert "end of the stack" in focus_curve_ambiguity(z, z.astype(float))


def test_ambiguity_flag_reaches_labels(tmp_path):
    make_stack(tmp_path, "p1", "s1", dict.fromkeys(range(-3, 4), 5))
    report = label_dataset(tmp_path, "vollath_f5")
    assert report.ambiguous_stacks == [("p1", "s1")]


# --------------------------------------------------------------------------- splits

def test_split_by_plate_never_leaks_and_is_seeded():
    plates = [f"plate{i}" for i in range(10)] * 3
    train, val = split_by_plate(plates, 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7 and not set(train) & set(val)
    assert set(train) | set(val) == set(plates)
    assert split_by_plate(plates, 0.3, seed=1) == (train, val)
    assert any(split_by_plate(plates, 0.3, seed=s)[1] != val for s in range(2, 10))
    assert split_by_plate(["a", "b"], 0.01) in ((["a"], ["b"]), (["b"], ["a"]))
    assert len(split_by_plate(["a", "b", "c"], 0.99)[0]) == 1


@pytest.mark.parametrize("plates,fraction,message", [
    (["only"], 0.2, "need at least 2 plates"),
    ([], 0.2, "need at least 2 plates"),
    (["a", "b"], 0.0, "val_fraction"),
    (["a", "b"], 1.0, "val_fraction"),
])
def test_split_by_plate_errors(plates, fraction, message):
    with pytest.raises(ValueError, match=message):
        split_by_plate(plates, fraction)


# --------------------------------------------------------------------------- best index, progress, writer

def test_best_index_truth_then_stack_yaml_then_labels():
    rows = [LabelRow("p", "other", "z_0.png", 0, 9, 9, "brenner", 1.0, "full", None, False),
            LabelRow("p", "s", "z_0.png", 0, -2, -2, "brenner", 1.0, "full", None, False)]
    assert best_index({"true_best_index": 3, "best_index": 4}, ("p", "s"), rows) == BestIndex(3, "true_best_index")
    assert best_index({"best_index": 4}, ("p", "s"), rows) == BestIndex(4, "best_index")
    assert best_index({}, ("p", "s"), rows) == BestIndex(-2, "labels.csv")
    assert best_index({}, ("p", "missing"), rows) is None and best_index({}) is None


def test_label_progress_is_reported_through_the_callback(tmp_path):
    make_stack(tmp_path, "p1", "s1", PEAK_AT_1)
    calls = []
    label_dataset(tmp_path, "vollath_f5", progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 7) and calls[-1] == (7, 7) and len(calls) == 8
    calls.clear()
    label_dataset(tmp_path, "vollath_f5", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 0)]  # unchanged: nothing to measure


def test_stack_writer_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "plates" / "p" / "s"
    out.parent.mkdir(parents=True)
    with StackWriter(out, {"step_um": 2.5, "window_px": [1, 2, 3, 4]}) as writer:
        writer.add(-1, banded(3))
        writer.add(2, banded(4).astype(np.float32))
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == ["stack.yaml", "z_-1.png", "z_2.tif"]
    assert yaml.safe_load((out / "stack.yaml").read_text()) == {"step_um": 2.5, "window_px": [1, 2, 3, 4]}
    with pytest.raises(RuntimeError, match="stop"):
        with StackWriter(out, {"step_um": 5.0}) as writer:
            writer.add(0, banded(1))
            raise RuntimeError("stop")
    assert sorted(p.name for p in out.iterdir()) == ["stack.yaml", "z_-1.png", "z_2.tif"]  # the old stack stays
    assert sorted(p.name for p in out.parent.iterdir()) == ["s"]  # no temporary directory left
    with StackWriter(out, {"step_um": 5.0}) as writer:
        writer.add(0, banded(1))
    assert sorted(p.name for p in out.iterdir()) == ["stack.yaml", "z_0.png"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["s"]


@pytest.mark.parametrize("plate, stack", [("", "s"), ("p", ""), (".", "s"), ("p", ".."), ("../../escaped", "s"),
                                          ("p", "a/b"), ("p", "/abs/path"), (".hidden", "s"), ("p", "a\\b")])
def test_stack_paths_take_only_plain_directory_names(tmp_path, plate, stack):
    """Every writer builds its path here: a name that leaves the dataset, or that no reader finds, is refused."""
    with pytest.raises(DatasetError, match=r"name .* must be one directory name"):
        stack_dir(tmp_path, plate, stack)
    assert stack_dir(tmp_path, "plate_1", "stack_000") == tmp_path / "plates" / "plate_1" / "stack_000"
    assert plate_dir(tmp_path, "plate_1") == tmp_path / "plates" / "plate_1"
    with pytest.raises(DatasetError, match="plate name '..'"):
        plate_dir(tmp_path, "..")
