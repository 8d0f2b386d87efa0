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

"""End-to-end latency of the focus pipeline: image stamp -> focus/offset, 2592x1944 mono8 frames.

    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=77   # loopback only, a domain of its own
    .venv/bin/python benchmarks/e2e_latency.py --frames 300 --threads 1      # models/default.onnx (crop model)
    .venv/bin/python benchmarks/e2e_latency.py --frames 300 --threads 0 --json out.json
    .venv/bin/python benchmarks/e2e_latency.py --pipeline direct --model FULL.onnx   # a full-frame model
    .venv/bin/python benchmarks/e2e_latency.py --standin mobilenetv3_small_100:224   # random weights (torch, timm)

This script is the camera: it stamps each frame (before the message is built), builds the
sensor_msgs/Image and publishes ``camera/image_raw`` at ``--fps`` (reliable, depth 2, like camera_node),
and listens to ``focus/offset``. The nodes run as their own processes, as ``ros2 run`` starts them
(``python -m celegans_autofocus.nodes.<node> --ros-args -r __ns:=/e2e_bench -p ...``):

- ``--pipeline detector`` (the default when the model's metadata says ``input_view: crop``, as the
  bundled models/default.onnx does): camera -> ``worm_detector_node`` (default parameters, ``fov_px``
  = ``--fov``, 500, plus any ``--detector-param NAME:=VALUE``; it finds and tracks the worm and
  publishes ``worm/crop``, then ``worm/target`` and its 640 px ``worm/debug_image``)
  -> ``focus_predictor_node -p input:=crop`` -> ``focus/offset``.
- ``--pipeline direct`` (the default for any other model): camera -> ``focus_predictor_node -p input:=full``
  (the whole frame) -> ``focus/offset``.

Both get ``-p model_path:=M -p intra_op_threads:=--threads``. Figures per run (ms, over the timed frames):

- ``receipt``: image stamp -> focus/offset received back here (the whole pipeline plus one small DDS hop).
- ``node``: the predictor's own measure (its /diagnostics latency_p50/p95_ms over its last ``--frames``
  predictions): image stamp -> focus/offset publication.
- ``camera_publish``: image stamp -> this script's publish() returned (building the 5 MB message and
  handing it to DDS), the first part of every figure above.
- ``detector_stage`` (detector pipeline): image stamp -> worm/target received here. The detector
  publishes worm/target right after worm/crop, so this is the latency of the crop the predictor gets.
- ``target_seen_frames`` / ``target_on_worm_frames`` (detector pipeline): timed frames whose worm/target
  says the target was seen in that frame (z = 0), and whose crop centre lies inside the bounding box of
  one of the scene's worms (the synthetic scene's truth), i.e. the crop is centred on a worm.
- ``in_process_medians``: the parts timed alone in this process after the run, to show where the time
  goes. Detector pipeline: building the 5 MB Image message, decoding it back (image_to_array + to_gray),
  the detector's WormCropper on a full frame, building the crop message, the node's debug view
  (WormDetectorNode._debug_image, called on a stand-in for the node), the predictor's preprocessing of
  the crop, the ONNX run, and FocusPredictor.predict on the crop (preprocessing + ONNX). Direct
  pipeline: message building, preprocessing of a full frame, the ONNX run.

Transport: a 2592x1944 mono8 frame is 5 MB. With Fast DDS's default shared-memory segment (512 KB)
a best-effort (sensor-data QoS) subscriber in another process loses most such frames, so by default
(``--transport large-shm``) this script and every node process run with the Fast DDS profile whose
SHM segment holds whole frames (``config/fastdds_large_frames.xml`` in ``FASTDDS_DEFAULT_PROFILES_FILE``,
as autofocus.launch.py does); ``--transport default`` measures without it.

Frames: one synthetic brightfield plate with 3 worms (core.optics fast path at 648x486, upscaled to
2592x1944 with INTER_CUBIC), 8 frames at offsets -150..+150 steps, published in a loop; the
detector finds the worms in all of them. The 1-minute load average is recorded at the start and the
end of each run, since the machine may be shared. ``ROS_AUTOMATIC_DISCOVERY_RANGE`` defaults to
LOCALHOST and ``ROS_DOMAIN_ID`` to a pid-derived 150-229 when not set.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from celegans_autofocus.core.detection import WormCropper, crop_image
from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, make_scene
from celegans_autofocus.core.predictor import FocusPredictor, default_model_path
from celegans_autofocus.core.sensor import FULL_FRAME_WH_PX

FRAME_WH = FULL_FRAME_WH_PX
NAMESPACE = "/e2e_bench"
LARGE_SHM_PROFILE = Path(__file__).resolve().parent.parent / "config" / "fastdds_large_frames.xml"
N_WORMS = 3


def synthetic_frames(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    """``n`` frames of one scene at offsets -150..+150 steps, and the bounding boxes (x0, y0, w, h) of its worms."""
    config = OpticsConfig()
    scene = make_scene(np.random.default_rng(seed), config, N_WORMS)
    renderer = StackRenderer(scene, config, (486, 648), seed=seed)
    frames = [cv2.resize(renderer.frame(float(o)), FRAME_WH, interpolation=cv2.INTER_CUBIC)
              for o in np.linspace(-150, 150, n)]
    return frames, [tuple(int(v) for v in w.bbox_px) for w in scene.worms]


def make_camera(pipeline: str):
    """Make the camera node; rclpy is imported here, after main() has set the DDS environment."""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PointStamped
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from celegans_autofocus.nodes.common import array_to_image, reliable_qos

    def stamp_ns(msg) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    class Camera(Node):
        """Publishes frames stamped at capture (before the message is built) and times the replies."""

        def __init__(self):
            super().__init__("e2e_camera", namespace=NAMESPACE)
            self.pub = self.create_publisher(Image, "camera/image_raw", reliable_qos(depth=2))
            self.receipt_ms: dict[int, float] = {}
            self.publish_ms: dict[int, float] = {}  # stamp -> until publish() returned (message built + sent)
            self.target: dict[int, tuple[float, float, float, float]] = {}  # stamp -> (ms, x, y, lost frames)
            self.diagnostics: dict[str, str] = {}
            self.create_subscription(PointStamped, "focus/offset", self._on_offset, reliable_qos(depth=50))
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(depth=10))
            if pipeline == "detector":
                self.create_subscription(PointStamped, "worm/target", self._on_target, reliable_qos(depth=50))

        def publish(self, frame: np.ndarray) -> int:
            stamp = self.get_clock().now()
            msg = array_to_image(frame, "mono8", frame_id="camera")
            msg.header.stamp = stamp.to_msg()
            self.pub.publish(msg)
            self.publish_ms[stamp.nanoseconds] = (self.get_clock().now() - stamp).nanoseconds * 1e-6
            return stamp.nanoseconds

        def _on_offset(self, msg) -> None:
            now_ns = self.get_clock().now().nanoseconds
            self.receipt_ms[stamp_ns(msg)] = (now_ns - stamp_ns(msg)) * 1e-6

        def _on_target(self, msg) -> None:
            now_ns = self.get_clock().now().nanoseconds
            self.target[stamp_ns(msg)] = ((now_ns - stamp_ns(msg)) * 1e-6, msg.point.x, msg.point.y, msg.point.z)

        def _on_diag(self, msg) -> None:
            for status in msg.status:
                if status.name.startswith(f"{NAMESPACE}/focus_predictor_node"):
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    return Camera()


def spin_for(node, seconds: float) -> None:
    import rclpy

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=max(0.0, min(0.005, end - time.monotonic())))


def set_environment(transport: str) -> None:
    """DDS on loopback in a domain of its own; the large-SHM Fast DDS profile unless 'default'."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
    if transport == "large-shm":
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LARGE_SHM_PROFILE)


def node_commands(model: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    """Return the node processes of the pipeline: name -> command line."""
    def cmd(node: str, *params: str) -> list[str]:
        ros = ["--ros-args", "-r", f"__ns:={NAMESPACE}"]
        for p in params:
            ros += ["-p", p]
        return [sys.executable, "-m", f"celegans_autofocus.nodes.{node}", *ros]

    predictor = cmd("focus_predictor_node", f"model_path:={model}", f"intra_op_threads:={args.threads}",
                    f"input:={'crop' if args.pipeline == 'detector' else 'full'}",
                    f"stats_window:={max(10, args.frames)}", "diagnostics_period_s:=0.5")
    if args.pipeline == "detector":
        return {"worm_detector_node": cmd("worm_detector_node", f"fov_px:={args.fov}", *args.detector_param),
                "focus_predictor_node": predictor}
    return {"focus_predictor_node": predictor}


class NodeProcesses:
    """The node processes of ``commands``, each logging to a file (not a pipe: a full pipe would block a node)."""

    def __init__(self, commands: dict[str, list[str]]) -> None:
        self.logs = {name: tempfile.TemporaryFile("w+") for name in commands}
        self.procs = {name: subprocess.Popen(c, env=dict(os.environ), stdout=self.logs[name],
                                             stderr=subprocess.STDOUT, text=True) for name, c in commands.items()}

    def log(self, name: str) -> str:
        """Return the last 3000 characters ``name`` wrote."""
        self.logs[name].seek(0)
        return self.logs[name].read()[-3000:]

    def check(self, when: str = "") -> None:
        """Stop the benchmark, with the node's log, if a node has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}{when}:\n{self.log(name)}")

    def all_logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)}" for name in self.procs)

    def stop(self) -> dict[str, int]:
        """Terminate every node (kill one still running after 20 s), close the logs; return the exit codes."""
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for f in self.logs.values():
            f.close()
        return {name: proc.returncode for name, proc in self.procs.items()}


def measure(model: Path, args: argparse.Namespace, frames: list[np.ndarray]) -> tuple[list[int], object, dict]:
    """Run the node processes and the camera; (timed stamps, the camera node with what it received, commands)."""
    import rclpy

    commands = node_commands(model, args)
    nodes = NodeProcesses(commands)
    rclpy.init()
    camera = make_camera(args.pipeline)
    try:
        def ready() -> bool:
            if not camera.get_publishers_info_by_topic(f"{NAMESPACE}/focus/offset"):
                return False
            if args.pipeline == "detector":  # the detector subscribes the camera, the predictor the crop
                return (camera.pub.get_subscription_count() > 0
                        and bool(camera.get_subscriptions_info_by_topic(f"{NAMESPACE}/worm/crop"))
                        and bool(camera.get_publishers_info_by_topic(f"{NAMESPACE}/worm/target")))
            return camera.pub.get_subscription_count() > 0

        deadline = time.monotonic() + 60
        while not ready():
            nodes.check()
            if time.monotonic() > deadline:
                raise SystemExit("the nodes did not come up in 60 s:\n" + nodes.all_logs())
            spin_for(camera, 0.1)
        spin_for(camera, 1.0)  # let the node-to-node matches settle too
        period_s = 1.0 / args.fps
        stamps: list[int] = []
        for i in range(args.warmup + args.frames):
            t0 = time.monotonic()
            stamp_ns = camera.publish(frames[i % len(frames)])
            if i >= args.warmup:
                stamps.append(stamp_ns)
            spin_for(camera, max(0.0, period_s - (time.monotonic() - t0)))
        spin_for(camera, 2.0)
        nodes.check(" during the run")
        return stamps, camera, {n: " ".join(c) for n, c in commands.items()}
    finally:
        camera.destroy_node()
        rclpy.try_shutdown()
        nodes.stop()


def median_ms(fn, n: int) -> float:
    """Median wall time of ``fn(i)`` over ``n`` calls, after one untimed call."""
    fn(0)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def breakdown_direct(model: Path, frames: list[np.ndarray], threads: int, n: int = 30) -> dict:
    """Median ms of the parts, in this process: building the Image message, preprocessing, the ONNX run."""
    from celegans_autofocus.nodes.common import array_to_image

    predictor = FocusPredictor(model, providers=["CPUExecutionProvider"], intra_op_threads=threads)
    x = predictor.preprocess(frames[0])[None]
    name = predictor.session.get_inputs()[0].name
    return {
        "build_image_msg_ms": median_ms(lambda i: array_to_image(frames[i % len(frames)], "mono8"), n),
        "preprocess_ms": median_ms(lambda i: predictor.preprocess(frames[i % len(frames)]), n),
        "onnx_run_ms": median_ms(lambda i: predictor.session.run(None, {name: x}), n),
    }


def breakdown_detector(model: Path, frames: list[np.ndarray], threads: int, fov_px: int, n: int = 30) -> dict:
    """Median ms of the detector pipeline's parts, in this process (see the module docstring)."""
    from celegans_autofocus.core.images import to_gray
    from celegans_autofocus.nodes.common import array_to_image, image_to_array
    from celegans_autofocus.nodes.worm_detector_node import WormDetectorNode

    predictor = FocusPredictor(model, providers=["CPUExecutionProvider"], intra_op_threads=threads)
    cropper = WormCropper(fov_px=fov_px)  # the node's defaults: DetectorConfig(), full_width_px 2592, ...
    msgs = [array_to_image(f, "mono8") for f in frames]
    results = [cropper(f) for f in frames]
    crops = [np.ascontiguousarray(crop_image(f, r.window_px)) for f, r in zip(frames, results)]
    x = predictor.preprocess(crops[0])[None]
    name = predictor.session.get_inputs()[0].name
    stand_in = SimpleNamespace(params=SimpleNamespace(debug_width_px=640),
                               _offset_text=lambda msg: "focus offset +12.3 steps")
    k = len(frames)
    return {
        "build_image_msg_ms": median_ms(lambda i: array_to_image(frames[i % k], "mono8"), n),
        "decode_image_msg_ms": median_ms(lambda i: to_gray(image_to_array(msgs[i % k]), "mono8"), n),
        "detector_full_frame_ms": median_ms(lambda i: cropper(frames[i % k]), n),
        "build_crop_msg_ms": median_ms(
            lambda i: array_to_image(crop_image(frames[i % k], results[i % k].window_px), "mono8"), n),
        "debug_view_ms": median_ms(lambda i: WormDetectorNode._debug_image(
            stand_in, frames[i % k], results[i % k].detections, results[i % k].state, results[i % k].window_px,
            msgs[i % k]), n),
        "crop_preprocess_ms": median_ms(lambda i: predictor.preprocess(crops[i % k]), n),
        "onnx_run_ms": median_ms(lambda i: predictor.session.run(None, {name: x}), n),
        "predict_crop_ms": median_ms(lambda i: predictor.predict(crops[i % k]), n),
        "crop_px": list(crops[0].shape),
    }


def percentiles(values, prefix: str) -> dict:
    a = np.asarray(values, dtype=float)
    return {f"{prefix}_{name}_ms": (float(np.percentile(a, q)) if a.size else None)
            for name, q in (("p50", 50), ("p95", 95), ("max", 100))}


def inside(point: tuple[float, float], box: tuple[int, int, int, int]) -> bool:
    x0, y0, w, h = box
    return x0 <= point[0] <= x0 + w and y0 <= point[1] <= y0 + h


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: models/default.onnx)")
    parser.add_argument("--standin", default=None, metavar="ARCH:INPUT_PX",
                        help="time a random-weight timm export instead (predictor_latency.export_standin; "
                             "weights do not change latency)")
    parser.add_argument("--pipeline", choices=["auto", "detector", "direct"], default="auto",
                        help="detector: camera -> worm_detector_node -> predictor on worm/crop; direct: "
                             "predictor on camera/image_raw; auto (default): detector if the model's "
                             "input_view is 'crop', else direct")
    parser.add_argument("--fov", type=int, default=500, help="worm_detector_node fov_px (detector pipeline)")
    parser.add_argument("--detector-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra worm_detector_node parameter (repeatable), e.g. debug_width_px:=0")
    parser.add_argument("--frames", type=int, default=300, help="frames timed (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=20, help="frames published before timing starts")
    parser.add_argument("--fps", type=float, default=15.0, help="camera rate")
    parser.add_argument("--threads", type=int, default=0, help="predictor intra_op_threads (0 = ORT default)")
    parser.add_argument("--transport", choices=["large-shm", "default"], default="large-shm",
                        help="Fast DDS shared-memory segment: large enough for a frame, or Fast DDS's default")
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    args = parser.parse_args()
    load_start, started_utc = os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    set_environment(args.transport)
    if args.standin:
        from predictor_latency import export_standin  # benchmarks/, beside this script; needs torch + timm

        arch, _, px = args.standin.partition(":")
        model = export_standin(arch, int(px or 224), Path(tempfile.mkdtemp(prefix="e2e_standin_")))
    else:
        model = (args.model or default_model_path()).resolve()
    meta = FocusPredictor(model, providers=["CPUExecutionProvider"]).metadata
    if args.pipeline == "auto":
        args.pipeline = "detector" if meta.get("input_view") == "crop" else "direct"
    frames, worm_boxes = synthetic_frames(8)
    stamps, camera, commands = measure(model, args, frames)
    if args.pipeline == "detector":
        parts = breakdown_detector(model, frames, args.threads, args.fov)
    else:
        parts = breakdown_direct(model, frames, args.threads)
    diag = camera.diagnostics
    receipt = [camera.receipt_ms[s] for s in stamps if s in camera.receipt_ms]

    result = {
        "pipeline": args.pipeline, "model": model.name, "arch": meta.get("arch"),
        "input_view": meta.get("input_view"), "input_px": meta["preprocess"]["input_px"],
        "frame_wh": list(FRAME_WH), "fps": args.fps, "transport": args.transport, "threads": args.threads,
        "frames_published": args.frames, "frames_predicted": len(receipt),
        **percentiles(receipt, "receipt"),
        **percentiles([camera.publish_ms[s] for s in stamps], "camera_publish"),
        "node_latency_p50_ms": float(diag.get("latency_p50_ms", "nan")),
        "node_latency_p95_ms": float(diag.get("latency_p95_ms", "nan")),
        "node_fps": float(diag.get("fps", "nan")), "node_frames_dropped": int(diag.get("frames_dropped", -1)),
        "node_frames_rejected": int(diag.get("frames_rejected", -1)),
        "node_input_topic": diag.get("input_topic"),
    }
    if args.pipeline == "detector":
        targets = [camera.target[s] for s in stamps if s in camera.target]
        result.update({
            "fov_px": args.fov, "detector_params": args.detector_param, "frames_detected": len(targets),
            **percentiles([t[0] for t in targets], "detector_stage"),
            "target_seen_frames": sum(1 for t in targets if t[3] == 0),
            "target_on_worm_frames": sum(1 for t in targets if any(inside(t[1:3], b) for b in worm_boxes)),
            "target_center_px_median": ([float(np.median([t[i] for t in targets])) for i in (1, 2)]
                                        if targets else None),
            "worm_bboxes_px": [list(b) for b in worm_boxes],
        })
    result.update({
        "in_process_medians": parts, "cpu_count": os.cpu_count(),
        "load_average_1min_start": load_start, "load_average_1min": os.getloadavg()[0],
        "ros_domain_id": os.environ["ROS_DOMAIN_ID"], "commands": commands,
        "started_utc": started_utc, "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    })
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
