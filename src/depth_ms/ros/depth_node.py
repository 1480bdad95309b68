"""depth_node: camera image in, depth image / coloured depth / point cloud / DepthInfo out.

Subscribes (remappable, PX4 SITL defaults): ``camera/rgb/image_raw``, ``camera/rgb/camera_info``
and, only for estimators that need ground truth (the oracle), ``camera/depth/image_raw``.
With ``scale.source: rangefinder`` it also reads a downward ``sensor_msgs/Range``.
Publishes under ``~depth/``: ``image`` (32FC1 metres, REP 118) and ``points`` (PointCloud2 xyz+rgb, optical
frame) only while the frame has a metric scale; ``relative`` (32FC1, the model's own map, relative models
only), ``colored`` (bgr8), ``camera_info`` (rescaled to the output size), ``uncertainty`` and ``info``
(depth_ms/DepthInfo: the scale's source, state and fit). Parameters: see
:class:`depth_ms.core.node_config.DepthNodeConfig`, :class:`depth_ms.metric.ScaleConfig` and docs/node.md.
"""
from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Optional

import message_filters
import rospy
import tf2_ros
from sensor_msgs.msg import CameraInfo, Image

from depth_ms.core.config import ConfigError
from depth_ms.core.image_ops import BadInputError
from depth_ms.core.latest_slot import LatestOnlySlot
from depth_ms.core.node_config import DepthNodeConfig
from depth_ms.core.products import make_products, output_frame
from depth_ms.core.stream_breaks import StreamBreaks
from depth_ms.core.transforms import optical_in_camera
from depth_ms.core.types import DepthKind, Frame, Intrinsics
from depth_ms.metric import ScaleConfig, load_scale_config
from depth_ms.models import registry
from depth_ms.models.base import DepthEstimator
from depth_ms.msg import DepthInfo

from . import conversions
from .core_logging import forward_core_logs
from .metric_scale import NodeMetricScale
from .params import private_params_as

BUFF_SIZE = 2 ** 26  # 64 MiB: rospy otherwise reads big images in small chunks and queues them (ros_comm #536)
NOTE_PERIOD = 10.0  # seconds before an identical warning is logged again
PAIR_CHECK_PERIOD = 3.0  # seconds between checks for why no image and ground-truth pair arrives
SHUTDOWN_WAIT = 2.0  # seconds the shutdown waits for the worker's current frame
STAMP_CLOCK_SPAN = 600.0  # an image stamp further behind the ROS clock than this is on another clock


@dataclass
class _Pending:
    image: Image
    gt_depth: Optional[Image]  # paired by exact stamp, only for the oracle and scale.source ground_truth
    input_gap: Optional[float]  # largest stamp step between received images since the last one taken
    received: rospy.Time  # ROS clock when the image arrived


def _keep_largest_gap(dropped: _Pending, newer: _Pending) -> _Pending:
    """The newer image, remembering the largest stamp step of the images dropped before it."""
    gaps = [g for g in (dropped.input_gap, newer.input_gap) if g is not None]
    newer.input_gap = max(gaps) if gaps else None
    return newer


@dataclass
class _Counters:
    frames_in: int = 0
    frames_out: int = 0
    rejected: int = 0
    failed: int = 0
    resets: int = 0
    latency_sum: float = 0.0
    model_sum: float = 0.0
    overhead_sum: float = 0.0
    window: int = 0


class DepthNode:
    """Wires an injected estimator between camera topics and depth outputs."""

    def __init__(self, estimator: DepthEstimator, config: DepthNodeConfig, scale: ScaleConfig) -> None:
        self.estimator = estimator
        self.config = config
        self.scale_config = scale
        self.metric_scale = NodeMetricScale(scale, estimator.kind, config.pose_frame, config.pose_timeout, NOTE_PERIOD)
        self.slot: LatestOnlySlot[_Pending] = LatestOnlySlot()
        self.counters = _Counters()
        self._camera_info: Optional[CameraInfo] = None
        self._breaks = StreamBreaks(config.time_jump_tolerance)
        self._last_received: Optional[float] = None  # stamp of the newest image received
        self._warned_scaled_info = False
        self._warned_principal_point = False
        self._warned_clock = False
        self._warmed_up = False

        self.pub_depth = rospy.Publisher("~depth/image", Image, queue_size=1)
        self.pub_relative = rospy.Publisher("~depth/relative", Image, queue_size=1)
        self.pub_colored = rospy.Publisher("~depth/colored", Image, queue_size=1)
        self.pub_points = rospy.Publisher("~depth/points", conversions.PointCloud2, queue_size=1)
        self.pub_info = rospy.Publisher("~depth/camera_info", CameraInfo, queue_size=1)
        self.pub_depth_info = rospy.Publisher("~depth/info", DepthInfo, queue_size=5)
        self.pub_uncertainty = rospy.Publisher("~depth/uncertainty", Image, queue_size=1)

        rospy.Subscriber("camera/rgb/camera_info", CameraInfo, self._on_camera_info, queue_size=1)
        scale_from_truth = scale.source == "ground_truth" and estimator.kind != DepthKind.METRIC
        if estimator.needs_ground_truth or scale_from_truth:
            self._truth_user = estimator.name if estimator.needs_ground_truth else "scale.source ground_truth"
            # Exact stamp pairing of image and ground truth; the pair then goes through the same slot.
            image_sub = message_filters.Subscriber("camera/rgb/image_raw", Image, queue_size=1, buff_size=BUFF_SIZE)
            depth_sub = message_filters.Subscriber("camera/depth/image_raw", Image, queue_size=1,
                                                   buff_size=BUFF_SIZE)
            self._sync = message_filters.TimeSynchronizer([image_sub, depth_sub], queue_size=5)
            self._sync.registerCallback(self._on_image_pair)
            self._pair_subs = (image_sub, depth_sub)
            self._pair_check = rospy.Timer(rospy.Duration(PAIR_CHECK_PERIOD), self._check_pairs)
        else:
            rospy.Subscriber("camera/rgb/image_raw", Image, self._on_image, queue_size=1, buff_size=BUFF_SIZE)
        if config.optical_parent_frame:
            self._publish_optical_tf(config.optical_parent_frame, config.optical_frame_id)
        self._tf_buffer = None
        needs_scale_pose = scale.uses_pose and estimator.kind != DepthKind.METRIC
        if config.pose_frame and (getattr(estimator, "uses_pose", False) or needs_scale_pose):
            self._tf_buffer = tf2_ros.Buffer(cache_time=rospy.Duration(30))
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer)
            self.metric_scale.tf_buffer = self._tf_buffer
        self._worker = threading.Thread(target=self._run, name="depth_inference", daemon=True)
        self._next_stats = time.monotonic() + config.stats_period

    def _publish_optical_tf(self, parent: str, optical: str) -> None:
        """Static parent -> optical transform (rpy -pi/2, 0, -pi/2: z forward, x right, y down)."""
        self._tf_broadcaster = tf2_ros.StaticTransformBroadcaster()
        self._tf_broadcaster.sendTransform(
            conversions.matrix_to_transform(optical_in_camera(), parent, optical, rospy.Time.now()))

    # ---------------------------------------------------------------- callbacks (never block)
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _check_pairs(self, _event) -> None:
        """Say why a model or scale that needs ground truth gets no frames (the synchroniser is silent otherwise)."""
        if self.counters.frames_in > 0:
            self._pair_check.shutdown()
            return
        image_sub, depth_sub = self._pair_subs
        images, depths = image_sub.sub.get_num_connections(), depth_sub.sub.get_num_connections()
        if images and not depths:
            rospy.logwarn(f"{self._truth_user} needs ground-truth depth on {depth_sub.sub.resolved_name}, which "
                          "has no publisher: nothing is published (remap camera/depth/image_raw or use a model)")
        elif images:
            rospy.logwarn(f"{self._truth_user}: no image and ground-truth depth with equal stamps yet on "
                          f"{image_sub.sub.resolved_name} and {depth_sub.sub.resolved_name}: nothing is published")

    def _on_image(self, msg: Image) -> None:
        self._receive(msg, None)

    def _on_image_pair(self, image: Image, gt_depth: Image) -> None:
        self._receive(image, gt_depth)

    def _receive(self, image: Image, gt_depth: Optional[Image]) -> None:
        """Into the latest-only slot, with the stamp step from the previous image (stamps' clock only)."""
        self.counters.frames_in += 1
        stamp = image.header.stamp.to_sec()
        gap = None if self._last_received is None else stamp - self._last_received
        self._last_received = stamp
        self.slot.put(_Pending(image, gt_depth, gap, rospy.Time.now()), merge=_keep_largest_gap)

    # ---------------------------------------------------------------- worker
    def start(self) -> None:
        self._worker.start()
        rospy.on_shutdown(self._stop)

    def _stop(self) -> None:
        """Release the worker and wait for it to finish its frame (bounded: a slow model frame is abandoned)."""
        self.slot.close()
        self._worker.join(timeout=SHUTDOWN_WAIT)

    def _warm_up(self, width: int, height: int) -> None:
        """Compile / first-run the model once, before it meets frames (frames meanwhile are dropped)."""
        seconds = self.estimator.warm_up(width, height)
        rospy.loginfo(f"{self.estimator.name}: warm-up (compile) at {width}x{height} took {seconds:.1f} s")
        self._warmed_up = True

    def _run(self) -> None:
        width, height = self.config.warm_up_size
        if width > 0 and height > 0:
            self._warm_up(width, height)
        while not self.slot.closed and not rospy.is_shutdown():  # rospy flags shutdown only after its hooks ran
            pending = self.slot.take(timeout=0.5)
            if pending is None:
                continue
            try:
                self.process(pending)
            except BadInputError as exc:
                self.counters.rejected += 1
                rospy.logwarn_throttle_identical(NOTE_PERIOD, f"skipping frame: {exc}")
            except Exception as exc:  # noqa: BLE001 - one bad frame must never kill the node
                self.counters.failed += 1
                rospy.logerr_throttle_identical(NOTE_PERIOD, f"frame failed ({type(exc).__name__}): {exc}")
            self._maybe_log_stats()

    def process(self, pending: _Pending) -> None:
        """Convert, infer, build and publish the outputs of one frame."""
        start = time.perf_counter()
        msg = pending.image
        rgb = conversions.image_to_rgb(msg)  # (H, W, 3) uint8
        stamp = msg.header.stamp.to_sec()
        self._check_continuity(stamp, (rgb.shape[1], rgb.shape[0]))
        intrinsics = self._intrinsics_for(rgb.shape[1], rgb.shape[0])
        gt = conversions.image_to_depth(pending.gt_depth) if pending.gt_depth is not None else None
        pose = None
        if self._tf_buffer is not None:  # camera pose for estimators that warp with it and for the metric scale
            pose = conversions.lookup_pose(self._tf_buffer, self.config.pose_frame,
                                           self.config.optical_frame_id or msg.header.frame_id, msg.header.stamp,
                                           self.config.pose_timeout)
        frame = Frame(rgb=rgb, stamp=stamp, frame_id=msg.header.frame_id, intrinsics=intrinsics,
                      pose_map_camera=pose, gt_depth=gt, sequence=msg.header.seq, input_gap=pending.input_gap)
        if not self._warmed_up:
            self._warm_up(rgb.shape[1], rgb.shape[0])
            fresher = self.slot.take(timeout=0)  # the newest image that arrived during the compile, if any
            if fresher is not None:  # this one is as old as the compile: streaming continues from the newer one
                self.process(fresher)
                return
            start = time.perf_counter()

        model_start = time.perf_counter()
        prediction = self.estimator.predict(frame)
        model_end = time.perf_counter()

        out = output_frame(rgb, prediction, intrinsics, self.config)
        scale = self.metric_scale.estimate(out.values, out.intrinsics, msg.header.stamp, pose, frame.gt_depth)
        products = make_products(out, self.config, (scale.scale, scale.shift) if scale.metric else None,
                                 self.scale_config.display_stretch)
        header = copy.deepcopy(msg.header)
        if self.config.optical_frame_id:
            header.frame_id = self.config.optical_frame_id
        if products.depth is not None:
            self.pub_depth.publish(conversions.depth_to_image(products.depth, header))
        if products.relative is not None:
            self.pub_relative.publish(conversions.depth_to_image(products.relative, header))
        if products.colored is not None:
            self.pub_colored.publish(conversions.bgr_to_image(products.colored, header))
        if products.intrinsics is not None:
            self.pub_info.publish(conversions.camera_info_from_intrinsics(products.intrinsics, header))
        if products.cloud is not None:
            self.pub_points.publish(conversions.cloud_to_msg(products.cloud, header))
        if products.uncertainty is not None:
            self.pub_uncertainty.publish(conversions.depth_to_image(products.uncertainty, header))
        end = time.perf_counter()

        counters = self.counters
        counters.frames_out += 1
        model_ms = (model_end - model_start) * 1e3
        overhead_ms = ((model_start - start) + (end - model_end)) * 1e3
        latency_ms = self._latency_ms(msg.header.stamp, pending.received)
        counters.window += 1
        counters.model_sum += model_ms
        counters.overhead_sum += overhead_ms
        counters.latency_sum += latency_ms
        info = DepthInfo(header=header, model=self.estimator.name, weights=getattr(self.estimator, "weights", ""),
                         depth_kind=int(products.kind), metric=products.depth is not None,
                         scale_source=scale.source, scale_state=scale.state, scale_note=scale.reason,
                         scale=products.scale, shift=products.shift, inlier_fraction=scale.inlier_fraction,
                         display_stretch=products.cloud_is_display_stretch,
                         denoising_steps=prediction.steps,
                         warm_start=prediction.warm_start, warm=prediction.warm,
                         cold_reason=prediction.extras.get("cold_reason", ""),
                         model_latency_ms=model_ms, overhead_ms=overhead_ms, latency_ms=latency_ms,
                         frames_in=counters.frames_in, frames_out=counters.frames_out,
                         frames_dropped=self.slot.dropped_count, frames_rejected=counters.rejected,
                         frames_failed=counters.failed, resets=counters.resets)
        self.pub_depth_info.publish(info)

    def _latency_ms(self, stamp: rospy.Time, received: rospy.Time) -> float:
        """Image stamp -> now on the ROS clock (sim time too); from the arrival instead when the stamp is on
        another clock (a bag played without --clock: stamps from another epoch), with a warning once."""
        now = rospy.Time.now()
        since_stamp = (now - stamp).to_sec()
        if -1.0 <= since_stamp <= STAMP_CLOCK_SPAN:
            return max(0.0, since_stamp) * 1e3
        if not self._warned_clock:
            rospy.logwarn(f"image stamps are {since_stamp:.0f} s from the ROS clock (a bag without --clock?): "
                          "latency is measured from each image's arrival")
            self._warned_clock = True
        return max(0.0, (now - received).to_sec()) * 1e3

    def _check_continuity(self, stamp: float, size: tuple[int, int]) -> None:
        """Reset the estimator's temporal state on a backwards time jump or a size change."""
        why = self._breaks.reason("", stamp, size)
        if why is not None:
            rospy.logwarn(f"{why}: resetting {self.estimator.name}")
            self._reset()

    def _reset(self) -> None:
        self.counters.resets += 1
        self.estimator.reset()
        self.metric_scale.reset()

    def _intrinsics_for(self, width: int, height: int) -> Optional[Intrinsics]:
        """Intrinsics matching the image, or None (no cloud) with a throttled warning saying why."""
        info = self._camera_info
        if info is None:
            rospy.logwarn_throttle_identical(NOTE_PERIOD, "no camera_info received yet on "
                                   f"{rospy.resolve_name('camera/rgb/camera_info')}: publishing depth "
                                   "without point cloud")
            return None
        try:
            intrinsics = conversions.intrinsics_from_camera_info(info)
        except BadInputError as exc:
            rospy.logwarn_throttle_identical(NOTE_PERIOD, f"ignoring camera_info: {exc}")
            return None
        if not self._warned_principal_point and not intrinsics.principal_point_near_centre():
            rospy.logwarn(f"camera_info principal point ({intrinsics.cx:g}, {intrinsics.cy:g}) is far from the centre "
                          f"of its {intrinsics.width}x{intrinsics.height} image (a K written for another size, like "
                          "PX4's fpv_cam?): it is used as given, so depth/points is sheared sideways")
            self._warned_principal_point = True
        if intrinsics.size == (width, height):
            return intrinsics
        if intrinsics.same_aspect(width, height):
            if not self._warned_scaled_info:
                rospy.logwarn(f"camera_info is {intrinsics.width}x{intrinsics.height} but images are "
                              f"{width}x{height}: rescaling the intrinsics")
                self._warned_scaled_info = True
            return intrinsics.scaled_to(width, height)
        rospy.logwarn_throttle_identical(NOTE_PERIOD, f"camera_info is {intrinsics.width}x{intrinsics.height}, "
                               f"images {width}x{height} (other aspect ratio): no point cloud")
        return None

    def _maybe_log_stats(self) -> None:
        if self.config.stats_period <= 0 or time.monotonic() < self._next_stats:
            return
        self._next_stats = time.monotonic() + self.config.stats_period
        c = self.counters
        n = max(c.window, 1)
        rospy.loginfo(f"frames in {c.frames_in}, out {c.frames_out}, dropped {self.slot.dropped_count}, "
                      f"rejected {c.rejected}, failed {c.failed}, resets {c.resets} | mean latency "
                      f"{c.latency_sum / n:.1f} ms, model {c.model_sum / n:.1f} ms, overhead "
                      f"{c.overhead_sum / n:.1f} ms over {c.window} frames")
        c.window, c.latency_sum, c.model_sum, c.overhead_sum = 0, 0.0, 0.0, 0.0


def main() -> None:
    rospy.init_node("depth_node")
    forward_core_logs()
    config = private_params_as(DepthNodeConfig)
    try:
        scale = load_scale_config(config.scale)
        if scale.uses_pose and not config.pose_frame:
            raise ConfigError(f"scale.source {scale.source} needs the camera pose: set ~pose_frame")
    except ConfigError as exc:
        rospy.logfatal(f"bad ~scale parameters: {exc}")
        raise SystemExit(2) from None
    try:
        estimator = registry.create(config.model, config.estimator, config.device, config.mode)
    except Exception as exc:  # noqa: BLE001 - report any construction failure clearly, then stop
        rospy.logfatal(f"cannot create model '{config.model}': {exc}")
        raise SystemExit(2) from None
    node = DepthNode(estimator, config, scale)
    node.start()
    weights = getattr(estimator, "weights", "")
    rospy.loginfo(f"depth_node running model '{config.model}' ({estimator.kind.name})"
                  + (f" with {weights} weights" if weights else "") + f", metric scale from '{scale.source}'")
    rospy.spin()
