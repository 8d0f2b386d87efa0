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

"""Tests of recording.py.

rosbag2 bags written with BagRecorder open with rosbags' AnyReader, both storages; BagReader gives clear
errors for missing, foreign, truncated and topic-less bags.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from celegans_autofocus import recording as rec
from celegans_autofocus.core.images import ImageError


def _write_bag(path: Path, storage: str) -> dict:
    rng = np.random.default_rng(0)
    mono8 = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    mono16 = rng.integers(0, 65536, (24, 32), dtype=np.uint16)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    with rec.BagRecorder(path, storage=storage) as bag:
        bag.write_msg("camera/image_raw", rec.image_msg(mono8, 1_000_000_000), 1_000_000_000)
        bag.write_msg("camera/image_raw", rec.image_msg(mono16, 1_100_000_000, encoding="mono16"), 1_100_000_000)
        bag.write_msg("camera/color", rec.image_msg(rgb, 1_200_000_000, encoding="rgb8", image_scale=0.5),
                      1_200_000_000)
        bag.write_msg("sim/ground_truth", rec.point_stamped_msg(0, 0, -42.5, 1_000_000_000), 1_000_000_005)
        bag.write_msg("stepper/joint_states", rec.joint_state_msg(["focus"], [17.0], 1_300_000_000), 1_300_000_000)
        assert bag.counts == {"/camera/image_raw": 2, "/camera/color": 1, "/sim/ground_truth": 1,
                              "/stepper/joint_states": 1}
    return {"mono8": mono8, "mono16": mono16, "rgb": rgb}


@pytest.mark.parametrize("storage,suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_round_trip_with_anyreader(tmp_path, storage, suffix):
    images = _write_bag(tmp_path / "bag", storage)
    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == rec.BAG_VERSION and meta["storage_identifier"] == storage
    assert [Path(f).suffix for f in meta["relative_file_paths"]] == [suffix]
    assert meta["message_count"] == 5

    got = {}
    with AnyReader([tmp_path / "bag"]) as reader:  # embedded definitions, no typestore needed
        for conn, t_ns, raw in reader.messages():
            got.setdefault(conn.topic, []).append((t_ns, reader.deserialize(raw, conn.msgtype), conn.msgtype))
    (t0, img0, typ), (_, img1, _) = got["/camera/image_raw"]
    assert t0 == 1_000_000_000 and typ == rec.IMAGE_TYPE
    assert np.array_equal(rec.image_from_msg(img0, typ), images["mono8"])
    assert np.array_equal(rec.image_from_msg(img1, typ), images["mono16"])
    colour = got["/camera/color"][0][1]
    assert (colour.width, colour.height, colour.encoding) == (16, 12, "rgb8")
    truth = got["/sim/ground_truth"][0][1]
    assert truth.point.z == -42.5 and rec.stamp_ns(truth.header) == 1_000_000_000
    assert got["/sim/ground_truth"][0][0] == 1_000_000_005
    joints = got["/stepper/joint_states"][0][1]
    assert list(joints.name) == ["focus"] and list(joints.position) == [17.0]


def test_bag_reader_resolves_names_and_yields_in_time_order(tmp_path):
    _write_bag(tmp_path / "bag", "mcap")
    with rec.BagReader(tmp_path / "bag") as bag:
        assert bag.require("camera/image_raw", [rec.IMAGE_TYPE]) == ("/camera/image_raw", rec.IMAGE_TYPE)
        assert bag.resolve("/sim/ground_truth") == "/sim/ground_truth"
        assert bag.resolve("ground_truth") == "/sim/ground_truth"  # relative name in a namespace
        stamps = [t for _, _, t, _ in bag.messages(list(bag.topics))]
    assert stamps == sorted(stamps) and len(stamps) == 5


def test_downscale_image_cdr_keeps_header_and_encoding():
    img = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)
    data = rec.serialize(rec.image_msg(img, 123_456_789, frame_id="cam", encoding="mono16"))
    small = rec.deserialize(rec.downscale_image_cdr(data, 0.5), rec.IMAGE_TYPE)
    assert (small.width, small.height, small.encoding, small.header.frame_id) == (30, 20, "mono16", "cam")
    assert rec.stamp_ns(small.header) == 123_456_789
    arr = rec.image_from_msg(small, rec.IMAGE_TYPE)
    assert arr.dtype == np.uint16 and abs(float(arr.mean()) - float(img.mean())) < 2
    with pytest.raises(ValueError, match="image_scale"):
        rec.downscale_image_cdr(data, 1.5)


def test_compressed_image_decodes_and_garbage_is_an_image_error():
    img = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    msg = rec.typestore().types[rec.COMPRESSED_IMAGE_TYPE](
        header=rec.header(0), format="png", data=np.frombuffer(cv2.imencode(".png", img)[1].tobytes(), np.uint8))
    assert np.array_equal(rec.image_from_msg(msg, rec.COMPRESSED_IMAGE_TYPE), img)
    msg.data = np.frombuffer(b"not an image", np.uint8)
    with pytest.raises(ImageError, match="cannot decode CompressedImage"):
        rec.image_from_msg(msg, rec.COMPRESSED_IMAGE_TYPE)


def test_recorder_bad_input(tmp_path):
    with pytest.raises(rec.BagError, match="unknown bag storage 'zip'"):
        rec.BagRecorder(tmp_path / "a", storage="zip")
    (tmp_path / "exists").mkdir()
    with pytest.raises(rec.BagError, match="exists"):
        rec.BagRecorder(tmp_path / "exists")
    with rec.BagRecorder(tmp_path / "b") as bag:
        with pytest.raises(rec.BagError, match="unknown message type 'my_pkg/msg/Thing'"):
            bag.add_topic("thing", "my_pkg/Thing")
        with pytest.raises(rec.BagError, match="/never was not added"):
            bag.write("never", b"", 0)
        bag.add_topic("x", "geometry_msgs/msg/PointStamped")
        with pytest.raises(rec.BagError, match="already has type"):
            bag.add_topic("/x", "sensor_msgs/msg/Image")


FILE_LIMIT_CHILD = """
import resource, signal, sys
import numpy as np
from celegans_autofocus import recording as rec
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3 * 2**20, 3 * 2**20))   # a disk that is full at 3 MB
bag = rec.BagRecorder(sys.argv[1], storage=sys.argv[2], min_free_bytes=2**20)
image = np.full((400, 500), 7, dtype=np.uint8)
for i in range(100):
    try:
        bag.write_msg("camera/image_raw", rec.image_msg(image, i), i)
    except rec.BagError as exc:
        print(exc)
        break
"""


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_out_of_room_stops_and_closes_a_readable_bag(tmp_path, storage):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FILE_LIMIT_CHILD, str(tmp_path / "bag"), storage],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "out of room" in out.stdout and "the bag was closed and is readable" in out.stdout, out.stdout
    written = int(out.stdout.split("recording stopped after ")[1].split()[0])
    with rec.BagReader(tmp_path / "bag") as bag:
        stamps = [t for _, _, t, _ in bag.messages(list(bag.topics))]
    assert 3 <= written < 100 and stamps == list(range(written))


def test_recorder_whose_directory_is_removed_stops_with_the_reason(tmp_path):
    import shutil

    bag = rec.BagRecorder(tmp_path / "bag")
    bag.write_msg("focus/offset", rec.point_stamped_msg(0, 0, 1.0, 1), 1)
    shutil.rmtree(tmp_path / "bag")
    for _ in range(2):                                    # the first write finds out, later ones repeat why
        with pytest.raises(rec.BagError, match="recording stopped after 1 messages: .* was removed while recording"):
            bag.write_msg("focus/offset", rec.point_stamped_msg(0, 0, 2.0, 2), 2)
    bag.close()                                           # already closed: nothing more to say


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_reader_bad_input(tmp_path, storage):
    with pytest.raises(rec.BagError, match="does not exist"):
        rec.BagReader(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(rec.BagError, match="no metadata.yaml"):
        rec.BagReader(tmp_path / "plain")
    _write_bag(tmp_path / "bag", storage)
    with rec.BagReader(tmp_path / "bag") as bag:
        with pytest.raises(rec.BagError, match=r"no topic 'focus/offset'; it has: /camera/color"):
            bag.require("focus/offset", [rec.POINT_STAMPED_TYPE])
        with pytest.raises(rec.BagError, match="unsupported message type sensor_msgs/msg/JointState"):
            bag.require("stepper/joint_states", [rec.POINT_STAMPED_TYPE])
    data_file = next(p for p in (tmp_path / "bag").iterdir() if p.name != "metadata.yaml")
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    with pytest.raises(rec.BagError, match="truncated or corrupt"):
        with rec.BagReader(tmp_path / "bag") as bag:
            list(bag.messages(list(bag.topics)))


# ---------------------------------------------------------------- bag_recorder_node on real rclpy

def test_bag_recorder_node_records_published_messages(tmp_path, ros_harness):
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import Image, JointState

    from celegans_autofocus.nodes.bag_recorder_node import BagRecorderNode
    from celegans_autofocus.nodes.common import array_to_image

    bag_path = tmp_path / "run"
    node = ros_harness.start(BagRecorderNode, bag_path=str(bag_path), storage="mcap", image_scale=0.5,
                             topics=["camera/image_raw", "focus/offset", "stepper/joint_states"],
                             discovery_period_s=0.05)
    probe = ros_harness.probe
    pubs = {"camera/image_raw": probe.publisher("camera/image_raw", Image),
            "focus/offset": probe.publisher("focus/offset", PointStamped),
            "stepper/joint_states": probe.publisher("stepper/joint_states", JointState)}
    assert ros_harness.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 10.0)
    assert node.all_subscribed
    img = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    for i in range(3):
        msg = array_to_image(img, "mono8")
        msg.header.frame_id = "camera"
        pubs["camera/image_raw"].publish(msg)
        offset = PointStamped()
        offset.point.z = float(10 * i)
        pubs["focus/offset"].publish(offset)
        joints = JointState(name=["focus"], position=[float(i)])
        pubs["stepper/joint_states"].publish(joints)
    ns = ros_harness.namespace
    assert ros_harness.spin_until(lambda: sum(node.recorder.counts.values()) >= 9, 10.0), node.recorder.counts
    ros_harness.nodes.remove(node)
    ros_harness.executor.remove_node(node)
    node.destroy_node()  # closes the bag

    with AnyReader([bag_path]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {f"{ns}/camera/image_raw": rec.IMAGE_TYPE, f"{ns}/focus/offset": rec.POINT_STAMPED_TYPE,
                          f"{ns}/stepper/joint_states": rec.JOINT_STATE_TYPE}
        msgs = {}
        for conn, _, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    image = msgs[f"{ns}/camera/image_raw"][0]
    assert (image.width, image.height, image.encoding, image.header.frame_id) == (32, 24, "mono8", "camera")
    assert sorted(m.point.z for m in msgs[f"{ns}/focus/offset"]) == [0.0, 10.0, 20.0]
    assert sorted(m.position[0] for m in msgs[f"{ns}/stepper/joint_states"]) == [0.0, 1.0, 2.0]


def test_bag_recorder_node_process_closes_bag_on_sigint_and_refuses_existing_path(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    cmd = [sys.executable, "-m", "celegans_autofocus.nodes.bag_recorder_node", "--ros-args",
           "-r", "__ns:=/rec_" + str(os.getpid()), "-p", f"bag_path:={tmp_path / 'bag'}", "-p", "storage:=sqlite3"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "bag").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert (tmp_path / "bag" / "metadata.yaml").exists(), out
    with rec.BagReader(tmp_path / "bag") as bag:
        assert bag.topics == {}

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20)
    assert again.returncode == 2
    assert f"{tmp_path / 'bag'} exists already" in again.stdout + again.stderr
