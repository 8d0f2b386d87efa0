"""camera_node and hardware/cameras.py on real files and real rclpy."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from celegans_autofocus.hardware.cameras import (CameraError, EndOfStream, FolderCamera, VideoFileCamera,
                                                 image_files, make_camera)
from celegans_autofocus.nodes.camera_node import CameraNode
from celegans_autofocus.nodes.common import ConfigError, image_to_array, stamp_to_s


def write_folder(folder: Path, n: int = 3, shape=(48, 64)) -> list[np.ndarray]:
    """z_-1, z_0, z_1, ... each filled with a distinct gradient, so order is checkable."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n):
        img = (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) + 40 * i).astype(np.uint8)
        cv2.imwrite(str(folder / f"z_{i - 1}.png"), img)
        images.append(img)
    return images


def write_video(path: Path, n: int = 5, shape=(48, 64)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (shape[1], shape[0]))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for i in range(n):
        frame = np.full((*shape, 3), 30 + 40 * i, np.uint8)
        frame[..., 2] = 200  # red channel: colour is really colour
        writer.write(frame)
    writer.release()


# ---------------------------------------------------------------- backends

def test_folder_backend_plays_in_natural_order_and_loops(tmp_path):
    images = write_folder(tmp_path, n=3)
    (tmp_path / "z_10.png").write_bytes(cv2.imencode(".png", images[0])[1].tobytes())
    assert [p.name for p in image_files(tmp_path)] == ["z_-1.png", "z_0.png", "z_1.png", "z_10.png"]
    with FolderCamera(tmp_path, loop=True) as cam:
        frames = [cam.read() for _ in range(5)]
    assert [f.encoding for f in frames] == ["mono8"] * 5
    assert np.array_equal(frames[1].image, images[1]) and np.array_equal(frames[4].image, images[0])
    assert abs(frames[0].capture_time_s - time.time()) < 5


def test_folder_backend_16_bit_and_end_of_stream(tmp_path):
    img16 = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)
    cv2.imwrite(str(tmp_path / "z_0.png"), img16)
    with FolderCamera(tmp_path, loop=False) as cam:
        frame = cam.read()
        with pytest.raises(EndOfStream):
            cam.read()
    assert frame.encoding == "mono16" and np.array_equal(frame.image, img16)


def test_video_backend_loops_and_keeps_colour_when_asked(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, n=4)
    with VideoFileCamera(video, loop=True, mono=True) as cam:
        frames = [cam.read() for _ in range(6)]
    assert all(f.encoding == "mono8" and f.image.shape == (48, 64) for f in frames)
    assert frames[1].image.mean() > frames[0].image.mean()  # brighter frame follows
    assert abs(frames[4].image.mean() - frames[0].image.mean()) < 3  # looped to the first frame
    with VideoFileCamera(video, loop=False, mono=False) as cam:
        frame = cam.read()
        for _ in range(3):
            cam.read()
        with pytest.raises(EndOfStream):
            cam.read()
    assert frame.encoding == "bgr8" and frame.image[..., 2].mean() > frame.image[..., 0].mean() + 50


@pytest.mark.parametrize("backend, kwargs, words", [
    ("folder", {"path": "/nonexistent/stack"}, "/nonexistent/stack"),
    ("video", {"path": "/nonexistent/clip.avi"}, "/nonexistent/clip.avi"),
    ("opencv", {"device": "/dev/video_nonexistent"}, "/dev/video_nonexistent"),
    ("opencv", {"fourcc": "MJPEG"}, "fourcc"),
    ("nope", {}, "unknown camera backend"),
])
def test_unopenable_sources_name_what_to_fix(backend, kwargs, words):
    with pytest.raises(CameraError, match=words.replace("/", ".")):
        make_camera(backend, **kwargs).open()


def test_corrupt_video_file_is_named(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(CameraError, match="bad.avi"):
        VideoFileCamera(bad).open()


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here")
def test_picamera2_missing_says_how_to_install():
    with pytest.raises(CameraError, match="apt install python3-picamera2.*pip install picamera2"):
        make_camera("picamera2").open()


# ---------------------------------------------------------------- node

def test_node_publishes_images_and_camera_info_with_capture_stamps(tmp_path, ros_harness):
    images = write_folder(tmp_path, n=3)
    ros_harness.start(CameraNode, backend="folder", path=str(tmp_path), fps=50.0, frame_id="cam_test")
    got = ros_harness.probe.collect("camera/image_raw", Image)
    infos = ros_harness.probe.collect("camera/camera_info", CameraInfo)
    assert ros_harness.spin_until(lambda: len(got) >= 6 and len(infos) >= 6, timeout_s=15)
    arrays = [image_to_array(m) for m in got]
    # frames come in folder order (the first few may be lost to discovery): consecutive ones follow
    idx = [next(i for i, img in enumerate(images) if np.array_equal(a, img)) for a in arrays]
    assert all((b - a) % 3 == 1 for a, b in zip(idx, idx[1:]))
    assert all(m.encoding == "mono8" and m.header.frame_id == "cam_test" for m in got)
    stamps = [stamp_to_s(m.header.stamp) for m in got]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert abs(stamps[-1] - time.time()) < 5
    by_stamp = {stamp_to_s(i.header.stamp): i for i in infos}
    info = by_stamp[stamps[-2]]
    assert (info.width, info.height, info.header.frame_id) == (64, 48, "cam_test")


def test_node_skips_corrupt_file_and_keeps_running(tmp_path, ros_harness):
    write_folder(tmp_path, n=2)
    (tmp_path / "z_5.png").write_bytes(b"\x89PNG broken")
    node = ros_harness.start(CameraNode, backend="folder", path=str(tmp_path), fps=100.0)
    got = ros_harness.probe.collect("camera/image_raw", Image)
    failures = []
    node.get_logger().set_level(40)  # the expected warnings stay out of the test log
    original = node._read_failed
    node._read_failed = lambda exc: (failures.append(str(exc)), original(exc))
    assert ros_harness.spin_until(lambda: len(got) >= 6 and len(failures) >= 2, timeout_s=15)
    assert all("z_5.png" in f for f in failures)
    assert all(m.width == 64 for m in got)


def test_node_stops_playback_at_end_without_loop(tmp_path, ros_harness):
    write_folder(tmp_path, n=3)
    node = ros_harness.start(CameraNode, backend="folder", path=str(tmp_path), fps=100.0, loop=False)
    assert ros_harness.spin_until(lambda: node.timer.is_canceled(), timeout_s=15)
    ros_harness.spin_for(0.1)
    assert node.frames_published == 3


def test_node_fps_changes_at_run_time_and_rejects_bad_values(tmp_path, ros_harness):
    write_folder(tmp_path, n=2)
    node = ros_harness.start(CameraNode, backend="folder", path=str(tmp_path), fps=5.0)
    assert node.set_parameters([Parameter("fps", value=100.0)])[0].successful
    assert node.timer.timer_period_ns == 10_000_000
    assert not node.set_parameters([Parameter("fps", value=0.0)])[0].successful
    assert not node.set_parameters([Parameter("backend", value="video")])[0].successful
    assert node.params.fps == 100.0


@pytest.mark.parametrize("params, words", [
    ({"backend": "folder", "path": "/nonexistent/frames"}, "/nonexistent/frames"),
    ({"backend": "webcam"}, "webcam"),
    ({"backend": "folder", "path": "/tmp", "fps": 0.0}, "fps"),
    ({"backend": "opencv", "fourcc": "MJPEG"}, "fourcc"),
])
def test_node_refuses_bad_configuration(params, words, ros_harness):
    with pytest.raises(ConfigError, match=words):
        ros_harness.start(CameraNode, **params)


def test_main_exits_non_zero_with_a_message_when_the_source_cannot_open():
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "celegans_autofocus.nodes.camera_node", "--ros-args",
                           "-p", "backend:=video", "-p", "path:=/nonexistent/run1.avi"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 2
    assert "/nonexistent/run1.avi" in proc.stderr and "Traceback" not in proc.stderr


def test_node_plays_a_video_file(tmp_path, ros_harness):
    video = tmp_path / "run.avi"
    write_video(video, n=4)
    node = ros_harness.start(CameraNode, backend="video", path=str(video), fps=100.0)
    got = ros_harness.probe.collect("camera/image_raw", Image)
    assert ros_harness.spin_until(lambda: len(got) >= 6, timeout_s=15)
    assert all((m.width, m.height, m.encoding) == (64, 48, "mono8") for m in got)
    assert node.frames_published >= 6  # looped past the 4 frames of the file
