"""End-to-end latency of focus_predictor_node: image stamp -> focus/offset, 2592x1944 mono8 frames.

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST .venv/bin/python benchmarks/e2e_latency.py   # models/default.onnx
    ... benchmarks/e2e_latency.py --model M.onnx --frames 300 --fps 15 --json out.json
    ... benchmarks/e2e_latency.py --standin mobilenetv3_small_100:224   # random weights, same cost (torch)

The predictor runs as its own process (``python -m celegans_autofocus.nodes.focus_predictor_node``,
as ``ros2 run`` starts it). This script is the camera: it stamps each frame, builds the
sensor_msgs/Image and publishes it at ``--fps`` (reliable, depth 2, like camera_node), and it
listens to focus/offset. Figures per run:

- ``node``: the predictor's own measure (its /diagnostics latency_p50/p95_ms): image stamp ->
  focus/offset publication, i.e. message building + DDS transport + decode + preprocessing + ONNX.
- ``receipt``: image stamp -> focus/offset received back here (adds one small DDS hop).
- ``in_process_medians``: the parts timed alone in this process (Image message building, THE
  preprocessing of a full frame, the ONNX run), to show where the time goes.

Transport: a 2592x1944 mono8 frame is 5 MB. With Fast DDS's default shared-memory segment (512 KB)
a best-effort (sensor-data QoS) subscriber in another process loses most such frames, so by default
(``--transport large-shm``) the script runs both processes with a Fast DDS profile whose SHM segment
holds whole frames (``config/fastdds_large_frames.xml``, passed in
``FASTDDS_DEFAULT_PROFILES_FILE``); ``--transport default`` measures without it.

Frames are synthetic brightfield plates (core.optics fast path at 648x486, upscaled to 2592x1944
with INTER_CUBIC; the content does not change the cost). Load average is recorded with the result,
since the machine may be shared.
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

import cv2
import numpy as np

from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, make_scene
from celegans_autofocus.core.predictor import FocusPredictor, default_model_path

FRAME_WH = (2592, 1944)
NAMESPACE = "/e2e_bench"
LARGE_SHM_PROFILE = Path(__file__).resolve().parent.parent / "config" / "fastdds_large_frames.xml"


def synthetic_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    config = OpticsConfig()
    renderer = StackRenderer(make_scene(np.random.default_rng(seed), config, 3), config, (486, 648), seed=seed)
    return [cv2.resize(renderer.frame(float(o)), FRAME_WH, interpolation=cv2.INTER_CUBIC)
            for o in np.linspace(-150, 150, n)]


def make_camera():
    """The camera node; rclpy is imported here, after main() has set the DDS environment."""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PointStamped
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from celegans_autofocus.nodes.common import array_to_image, reliable_qos

    class Camera(Node):
        """Publishes frames stamped at capture (before the message is built) and times the replies."""

        def __init__(self):
            super().__init__("e2e_camera", namespace=NAMESPACE)
            self.pub = self.create_publisher(Image, "camera/image_raw", reliable_qos(depth=2))
            self.receipt_ms: dict[int, float] = {}
            self.diagnostics: dict[str, str] = {}
            self.create_subscription(PointStamped, "focus/offset", self._on_offset, reliable_qos(depth=50))
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(depth=10))

        def publish(self, frame: np.ndarray) -> int:
            stamp = self.get_clock().now()
            msg = array_to_image(frame, "mono8", frame_id="camera")
            msg.header.stamp = stamp.to_msg()
            self.pub.publish(msg)
            return stamp.nanoseconds

        def _on_offset(self, msg) -> None:
            now_ns = self.get_clock().now().nanoseconds
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.receipt_ms[stamp_ns] = (now_ns - stamp_ns) * 1e-6

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


def measure(model: Path, args: argparse.Namespace, frames: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    """Run the predictor process and the camera; (receipt latencies in ms, the node's last diagnostics)."""
    import rclpy

    predictor = subprocess.Popen(
        [sys.executable, "-m", "celegans_autofocus.nodes.focus_predictor_node", "--ros-args",
         "-r", f"__ns:={NAMESPACE}", "-p", f"model_path:={model}", "-p", f"intra_op_threads:={args.threads}",
         "-p", f"stats_window:={max(10, args.frames)}", "-p", "diagnostics_period_s:=0.5"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    camera = make_camera()
    try:
        deadline = time.monotonic() + 60
        while camera.pub.get_subscription_count() == 0 or not camera.get_publishers_info_by_topic(
                f"{NAMESPACE}/focus/offset"):
            if predictor.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the predictor node did not start: {predictor.stderr.read()}")
            spin_for(camera, 0.1)
        period_s = 1.0 / args.fps
        stamps: list[int] = []
        for i in range(args.warmup + args.frames):
            t0 = time.monotonic()
            stamp_ns = camera.publish(frames[i % len(frames)])
            if i >= args.warmup:
                stamps.append(stamp_ns)
            spin_for(camera, max(0.0, period_s - (time.monotonic() - t0)))
        spin_for(camera, 2.0)
        receipt = np.array([camera.receipt_ms[s] for s in stamps if s in camera.receipt_ms])
        return receipt, camera.diagnostics
    finally:
        camera.destroy_node()
        rclpy.try_shutdown()
        predictor.terminate()
        predictor.wait(timeout=20)


def breakdown(model: Path, frames: list[np.ndarray], threads: int, n: int = 30) -> dict:
    """Median ms of the parts, in this process: building the Image message, preprocessing, the ONNX run."""
    from celegans_autofocus.nodes.common import array_to_image

    predictor = FocusPredictor(model, providers=["CPUExecutionProvider"], intra_op_threads=threads)

    def median_ms(fn) -> float:
        fn()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))

    x = predictor.preprocess(frames[0])[None]
    return {
        "build_image_msg_ms": median_ms(lambda i=0: array_to_image(frames[i % len(frames)], "mono8")),
        "preprocess_ms": median_ms(lambda i=0: predictor.preprocess(frames[i % len(frames)])),
        "onnx_run_ms": median_ms(lambda i=0: predictor.session.run(None, {predictor.session.get_inputs()[0].name: x})),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: models/default.onnx)")
    parser.add_argument("--standin", default=None, metavar="ARCH:INPUT_PX",
                        help="time a random-weight timm export instead (predictor_latency.export_standin; "
                             "weights do not change latency)")
    parser.add_argument("--frames", type=int, default=300, help="frames timed (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=20, help="frames published before timing starts")
    parser.add_argument("--fps", type=float, default=15.0, help="camera rate")
    parser.add_argument("--threads", type=int, default=0, help="predictor intra_op_threads (0 = ORT default)")
    parser.add_argument("--transport", choices=["large-shm", "default"], default="large-shm",
                        help="Fast DDS shared-memory segment: large enough for a frame, or Fast DDS's default")
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    args = parser.parse_args()
    set_environment(args.transport)
    if args.standin:
        from predictor_latency import export_standin  # benchmarks/, beside this script; needs torch + timm

        arch, _, px = args.standin.partition(":")
        model = export_standin(arch, int(px or 224), Path(tempfile.mkdtemp(prefix="e2e_standin_")))
    else:
        model = (args.model or default_model_path()).resolve()
    meta = FocusPredictor(model, providers=["CPUExecutionProvider"]).metadata
    frames = synthetic_frames(8)
    receipt, diag = measure(model, args, frames)
    parts = breakdown(model, frames, args.threads)

    def pct(q: float) -> float | None:
        return float(np.percentile(receipt, q)) if receipt.size else None

    result = {
        "model": model.name, "arch": meta.get("arch"), "input_px": meta["preprocess"]["input_px"],
        "frame_wh": list(FRAME_WH), "fps": args.fps, "transport": args.transport,
        "frames_published": args.frames, "frames_predicted": int(receipt.size),
        "receipt_p50_ms": pct(50), "receipt_p95_ms": pct(95), "receipt_max_ms": pct(100),
        "node_latency_p50_ms": float(diag.get("latency_p50_ms", "nan")),
        "node_latency_p95_ms": float(diag.get("latency_p95_ms", "nan")),
        "node_fps": float(diag.get("fps", "nan")), "node_frames_dropped": int(diag.get("frames_dropped", -1)),
        "in_process_medians": parts, "threads": args.threads, "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
