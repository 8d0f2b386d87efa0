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

"""focus_predictor_node: camera/image_raw (or worm/crop) -> focus/offset, one ONNX prediction per frame.

Keep-latest: the subscription is sensor-data QoS with depth 1 and the callback only parks the newest
frame in a one-slot mailbox; a worker thread predicts on whatever frame is newest when it is free.
A frame replaced in the mailbox before the worker took it is counted as dropped, so a slow model
falls behind by at most one frame and never builds a queue.

``focus/offset`` is a geometry_msgs/PointStamped with the source image's header: z = signed motor
steps to best focus (positive = move to larger z), x/y = centre of the analysed image in its own
pixels. Latency is measured from the image stamp to the publication, on the node clock.
Bad input (unknown encoding, inconsistent size, empty image, non-finite model output) is logged
(throttled) and counted, and the frame's ``focus/offset`` carries z = NaN ("no prediction for this
frame", which the controller holds on), so every frame the predictor takes gets exactly one answer;
the node keeps running. A missing or unusable
model stops the node at start-up with exit code 2 and a message naming the file.

``focus/offset_sigma`` (PointStamped, the image's header, z = the model's predicted standard deviation of
the offset in steps; NaN when the frame has no prediction) follows each ``focus/offset`` when the model has
an uncertainty output (metadata ``sigma_output``, the Gaussian NLL head); models without one publish nothing
there.

``focus/measure`` (PointStamped, the image's header, z = ``focus_measure`` of the image, larger = sharper;
NaN for an image that could not be read) follows each ``focus/offset`` while someone subscribes to it: the
hybrid controller verifies the CNN with it. It is computed after the offset is out (detail_skewness costs
~15-30 ms on a native 500 px crop), so it never delays ``focus/offset``.

A managed (lifecycle) node (nodes/lifecycle.py): ``configure`` loads the model into an ONNX Runtime session,
``activate`` subscribes and starts the worker, ``deactivate`` stops them (the frame in progress is still
answered), ``cleanup`` drops the session. Service ``~/reload_model`` (std_srvs/Trigger) re-reads the
model file while running: a file that does not load (or would need another input topic) is refused and
the loaded model is kept; ``autostart`` (default) configures and activates at start-up.
The image subscription takes QoS overrides (``qos_overrides.<topic>.subscription.*``).
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from ..core.focus import DEFAULT_MEASURE, MEASURES
from ..core.images import ImageError
from ..core.predictor import CPU_PROVIDER, CUDA_PROVIDER, FocusPredictor, ModelError, NonFiniteOutputError, \
    default_model_path, input_view
from .common import (ConfigError, Param, declare_params, image_to_gray, reliable_qos, run_node, sensor_qos,
                     stamp_ns, with_image_qos_overrides)
from .diagnostics import NodeDiagnostics, Report
from .lifecycle import AUTOSTART, ManagedNode

INPUT_TOPICS = {"full": "camera/image_raw", "crop": "worm/crop"}
PROBLEM_SHOWN_S = 5.0  # a rejected frame keeps the diagnostics at WARN this long
PROVIDERS = {"auto": "auto", "cpu": [CPU_PROVIDER], "cuda": [CUDA_PROVIDER]}

PARAMS = (
    Param("model_path", "", "ONNX model with celegans_autofocus metadata ('' = the bundled default model)",
          read_only=True),
    Param("input", "auto", "which image to predict on: full -> camera/image_raw, crop -> worm/crop, "
          "auto -> the view the model was trained on (its metadata's input_view)",
          choices=("auto", *INPUT_TOPICS), read_only=True),
    Param("provider", "auto", "onnxruntime execution provider: auto (CUDA if available, else CPU), cpu, cuda",
          choices=tuple(PROVIDERS), read_only=True),
    Param("intra_op_threads", 1, "onnxruntime intra-op threads (0 = onnxruntime's default, one per core; "
          "1 had the lowest latency tails beside the detector on 2 cores, benchmarks/e2e_latency.md)", range=(0, 256),
          read_only=True),
    Param("focus_measure", DEFAULT_MEASURE, "focus measure of each predicted image, published on focus/measure "
          "(z = value, larger = sharper) for the hybrid controller; '' = none", choices=("", *MEASURES),
          read_only=True),
    Param("diagnostics_period_s", 1.0, "period of the /diagnostics status", range=(0.05, 60.0), read_only=True),
    Param("stats_window", 300, "frames in the rolling fps/latency window", range=(10, 100000), read_only=True),
    AUTOSTART,
)


class LatestFrame:
    """One-slot mailbox: ``put`` replaces an untaken frame (counted in ``dropped``); ``take`` waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._msg: Image | None = None
        self._closed = False
        self.dropped = 0

    def put(self, msg: Image) -> None:
        with self._cond:
            if self._msg is not None:
                self.dropped += 1
            self._msg = msg
            self._cond.notify()

    def take(self, timeout_s: float) -> Image | None:
        """Take the newest frame (removing it); None after ``timeout_s`` or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._msg is not None or self._closed, timeout_s)
            msg, self._msg = self._msg, None
            return msg

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def open(self) -> None:
        """Take frames again (after :meth:`close`); a frame left from before counts as dropped."""
        with self._cond:
            if self._msg is not None:
                self.dropped += 1
            self._msg, self._closed = None, False

    @property
    def closed(self) -> bool:
        return self._closed


class FrameStats:
    """Rolling window of (publication time, latency) for fps and latency percentiles; thread-safe."""

    def __init__(self, window: int) -> None:
        self._lock = threading.Lock()
        self._done_s: deque[float] = deque(maxlen=window)
        self._latency_ms: deque[float] = deque(maxlen=window)

    def add(self, done_s: float, latency_ms: float | None) -> None:
        with self._lock:
            self._done_s.append(done_s)
            if latency_ms is not None:
                self._latency_ms.append(latency_ms)

    def fps(self) -> float:
        with self._lock:
            times = list(self._done_s)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def latency_percentiles_ms(self, *qs: float) -> list[float | None]:
        with self._lock:
            values = list(self._latency_ms)
        return [float(np.percentile(values, q)) if values else None for q in qs]


class FocusPredictorNode(ManagedNode):
    """The focus predictor as a managed node.

    configure loads the model (ONNX session), activate subscribes and starts the worker, deactivate stops
    both, cleanup drops the session.
    """

    NODE_NAME = "focus_predictor_node"

    def __init__(self, **kwargs):
        super().__init__(self.NODE_NAME, **kwargs)
        self.params = declare_params(self, PARAMS)
        p = self.params
        self.predictor: FocusPredictor | None = None
        self.input_topic = ""
        self.offset_pub = self.sigma_pub = self.measure_pub = self._image_sub = self._worker = self._reload_srv = None
        self._measure = MEASURES.get(p.focus_measure)
        self.frames_processed = 0
        self.frames_rejected = 0
        self.last_problem, self.last_problem_s = "", -float("inf")
        self.stats = FrameStats(p.stats_window)
        self._mailbox = LatestFrame()
        self._mailbox.close()  # until activated
        self.diagnostics = NodeDiagnostics(self, "focus predictor", p.diagnostics_period_s, self._report,
                                           lambda: self.predictor.name if self.predictor else "")
        if p.autostart:
            self.autostart()

    def _load_model(self) -> tuple[FocusPredictor, float]:
        """Load and warm up the ``model_path`` model; :class:`ConfigError` names the file when it cannot."""
        p = self.params
        try:
            path = p.model_path or default_model_path()
            predictor = FocusPredictor(path, providers=PROVIDERS[p.provider], intra_op_threads=p.intra_op_threads)
            return predictor, predictor.warm_up()  # before subscribing: the first frame is not the slow one
        except ValueError as exc:  # ModelError names the file; a provider error says which are available
            raise ConfigError(str(exc)) from None

    def _srv_reload_model(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """Re-read the model file; on any problem keep serving the model loaded before, and say why."""
        try:
            predictor, warm_up_ms = self._load_model()
            topic = INPUT_TOPICS[input_view(self.params.input, predictor.metadata)]
        except (ConfigError, ValueError) as exc:
            response.success, response.message = False, f"reload refused, the loaded model is kept: {exc}"
            self.get_logger().error(response.message)
            return response
        if topic != self.input_topic:
            response.success = False
            response.message = (f"reload refused, the loaded model is kept: the new model reads {topic}, this node "
                                f"{self.input_topic} (reconfigure the node to switch)")
            self.get_logger().error(response.message)
            return response
        self.predictor = predictor  # the worker takes the new session from its next frame on
        response.success, response.message = True, f"reloaded {predictor.path} (warm-up {warm_up_ms:.0f} ms)"
        self.get_logger().info(response.message)
        return response

    def configure(self) -> None:
        p = self.params
        predictor, warm_up_ms = self._load_model()
        self.predictor = predictor
        self.input_topic = INPUT_TOPICS[input_view(p.input, predictor.metadata)]
        self.offset_pub = self.create_lifecycle_publisher(PointStamped, "focus/offset", reliable_qos())
        self.sigma_pub = self.create_lifecycle_publisher(PointStamped, "focus/offset_sigma", reliable_qos())
        self._reload_srv = self.create_service(Trigger, "~/reload_model", self._srv_reload_model)
        if self._measure is not None:
            self.measure_pub = self.create_lifecycle_publisher(PointStamped, "focus/measure", reliable_qos())
        meta = predictor.metadata
        self.get_logger().info(
            f"model {predictor.path} (arch {meta.get('arch')}, input {predictor.spec.input_px} px, "
            f"trained on {meta.get('input_view')} views{', with sigma' if predictor.has_sigma else ''}) on "
            f"{predictor.providers[0]}, warm-up "
            f"{warm_up_ms:.0f} ms; "
            f"predicting on {self.resolve_topic_name(self.input_topic)}")

    def activate(self) -> None:
        self._mailbox.open()
        self._worker = threading.Thread(target=self._work, name="focus_predictor", daemon=True)
        self._worker.start()
        self._image_sub = with_image_qos_overrides(self.create_subscription, Image, self.input_topic,
                                                   self._mailbox.put, sensor_qos(depth=1))

    def deactivate(self) -> None:
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)  # the frame in progress is still answered
            self._worker = None

    def cleanup(self) -> None:
        for pub in (self.offset_pub, self.sigma_pub, self.measure_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.offset_pub = self.sigma_pub = self.measure_pub = None
        if self._reload_srv is not None:
            self.destroy_service(self._reload_srv)
            self._reload_srv = None
        self.predictor = None  # releases the ONNX session

    @property
    def frames_dropped(self) -> int:
        return self._mailbox.dropped

    def _work(self) -> None:
        while not self._mailbox.closed:
            msg = self._mailbox.take(timeout_s=0.2)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as exc:  # an onnxruntime failure on one frame must not kill the worker
                self._reject(msg, f"prediction failed: {type(exc).__name__}: {exc}")

    def _reject(self, msg: Image, why: str, gray: np.ndarray | None = None) -> None:
        """Count and log a frame without a prediction, and answer it with z = NaN."""
        self.frames_rejected += 1
        self.last_problem, self.last_problem_s = why, time.monotonic()
        self.get_logger().warning(f"frame rejected, offset NaN published: {why}", throttle_duration_sec=2.0)
        self._publish(msg, float("nan"), gray)

    def _publish(self, msg: Image, offset_steps: float, gray: np.ndarray | None,
                 sigma_steps: float | None = None) -> None:
        """focus/offset, focus/offset_sigma (models with sigma), then (when enabled and subscribed) focus/measure.

        All with the image's header.
        """
        out = PointStamped(header=msg.header)
        out.point.x, out.point.y, out.point.z = msg.width / 2.0, msg.height / 2.0, offset_steps
        self.offset_pub.publish(out)
        predictor = self.predictor
        if predictor is not None and predictor.has_sigma:
            sigma = PointStamped(header=msg.header)
            sigma.point.x, sigma.point.y = out.point.x, out.point.y
            sigma.point.z = float("nan") if sigma_steps is None else sigma_steps
            self.sigma_pub.publish(sigma)
        if self.measure_pub is not None and self.measure_pub.get_subscription_count() > 0:
            measure = PointStamped(header=msg.header)
            measure.point.z = float(self._measure(gray)) if gray is not None else float("nan")
            self.measure_pub.publish(measure)

    def _process(self, msg: Image) -> None:
        try:
            gray = image_to_gray(msg)
        except ImageError as exc:
            self._reject(msg, f"bad image on {self.input_topic}: {exc}")
            return
        try:
            offset_steps, sigma_steps = self.predictor.predict_with_sigma(gray)
        except ImageError as exc:  # no view the model reads: no focus measure of it either
            self._reject(msg, f"bad image on {self.input_topic}: {exc}")
            return
        except NonFiniteOutputError as exc:
            self._reject(msg, str(exc), gray)
            return
        self._publish(msg, offset_steps, gray, sigma_steps)
        ns = stamp_ns(msg.header.stamp)
        latency_ms = (self.get_clock().now().nanoseconds - ns) * 1e-6 if ns else None
        self.frames_processed += 1
        self.stats.add(time.monotonic(), latency_ms)

    def _report(self) -> Report:
        p50, p95 = self.stats.latency_percentiles_ms(50, 95)
        fps = self.stats.fps()
        if not self.is_active:
            level, message = DiagnosticStatus.WARN, f"{self.lifecycle_state} (lifecycle): not predicting"
        elif self.frames_processed == 0:
            level, message = DiagnosticStatus.WARN, f"no frame predicted yet on {self.input_topic}"
        else:
            level, message = DiagnosticStatus.OK, f"{fps:.1f} fps"
        if time.monotonic() - self.last_problem_s < PROBLEM_SHOWN_S:
            level = max(level, DiagnosticStatus.WARN)
            message += f"; last rejected frame: {self.last_problem}"

        def ms(v: float | None) -> str:
            return "nan" if v is None else f"{v:.2f}"

        values = {
            "lifecycle_state": self.lifecycle_state,
            "fps": f"{fps:.2f}", "latency_p50_ms": ms(p50), "latency_p95_ms": ms(p95),
            "frames_processed": str(self.frames_processed), "frames_dropped": str(self.frames_dropped),
            "frames_rejected": str(self.frames_rejected),
        }
        if self.predictor is not None:
            values.update({"model": self.predictor.name, "model_path": str(self.predictor.path),
                           "provider": self.predictor.providers[0],
                           "input_topic": self.resolve_topic_name(self.input_topic)})
        return level, message, values


def main(args: list[str] | None = None) -> int:
    return run_node(FocusPredictorNode, args, fatal=(ModelError,))


if __name__ == "__main__":
    raise SystemExit(main())
