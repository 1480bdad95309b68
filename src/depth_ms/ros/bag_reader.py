"""Stream frame records out of one or more rosbags (each bag is one sequence).

Messages are read in bag order and paired by header stamp (:mod:`depth_ms.evaluation.pairing`);
images are converted only once paired. Only a few seconds of messages are held at any time. A bag
that cannot be read, lacks a needed topic, or breaks half-way is reported in ``notes`` and the other
bags (and every frame read before the break) are still used. An unindexed bag (recording cut short)
is reindexed into a temporary copy and read up to the cut.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import rosbag
from scipy.spatial.transform import Rotation

from depth_ms.core.image_ops import BadInputError
from depth_ms.core.transforms import make_transform, optical_in_camera
from depth_ms.core.types import DepthKind, DepthPrediction, Intrinsics
from depth_ms.evaluation.config import PREDICTION_KINDS, LabellerConfig
from depth_ms.evaluation.pairing import BRACKET, NEAREST, Match, StampPairer
from depth_ms.evaluation.records import FrameRecord, Skip
from depth_ms.evaluation.temporal import interpolate_pose
from depth_ms.metric.scaler import RangeReading

from . import conversions

REFERENCE = "reference"


class _Bag:
    """One opened bag: its sequence name, topics and (for a reindexed copy) where the copy lives."""

    def __init__(self, path: Path, bag: rosbag.Bag, sequence: str, copy_dir: Optional[Path]) -> None:
        self.path = path
        self.bag = bag
        self.sequence = sequence
        self.copy_dir = copy_dir
        self.topics = {name: info.message_count for name, info in bag.get_type_and_topic_info().topics.items()}

    def close(self) -> None:
        self.bag.close()
        if self.copy_dir is not None:
            shutil.rmtree(self.copy_dir, ignore_errors=True)


class BagFrameSource:
    """A FrameSource over bags (see the module docstring).

    ``mode``: "recorded" (reference = the prediction topic; mode (a)), "model" (reference = the RGB
    topic; predictions added later by a ModelSource; mode (b)) or "export" (RGB with ground truth only).
    """

    def __init__(self, paths: list[Path], config: LabellerConfig, mode: str,
                 scratch_dir: Optional[Path] = None, sequences: Optional[list[str]] = None) -> None:
        """``sequences``: the bags' sequence names (default: their unique file stems, :func:`sequence_names`)."""
        if mode not in ("recorded", "model", "export"):
            raise ValueError(f"mode must be recorded, model or export, got '{mode}'")
        self.paths = [Path(p) for p in paths]
        self.config = config
        self.mode = mode
        self.scratch_dir = scratch_dir
        self.notes: list[str] = []
        self.counts: dict[str, int] = {}
        self.expected_frames: Optional[int] = None
        self._sequences = list(sequences) if sequences is not None else sequence_names(self.paths)
        topics = config.topics
        self.reference_topic = topics.prediction if mode == "recorded" else topics.rgb

    # ------------------------------------------------------------------ opening
    def _open(self, path: Path, sequence: str) -> Optional[_Bag]:
        """The opened bag, or None with a note saying why it cannot be used."""
        if not path.is_file():
            self.notes.append(f"{path}: no such bag file")
            return None
        try:
            return _Bag(path, rosbag.Bag(str(path)), sequence, None)
        except rosbag.ROSBagUnindexedException:
            return self._open_reindexed(path, sequence)
        except (rosbag.ROSBagException, OSError, ValueError) as exc:
            self.notes.append(f"{path}: cannot read the bag ({type(exc).__name__}: {exc})")
            return None

    def _open_reindexed(self, path: Path, sequence: str) -> Optional[_Bag]:
        copy_dir = Path(tempfile.mkdtemp(prefix="reindex_", dir=self.scratch_dir))
        copy = copy_dir / path.name
        try:
            shutil.copyfile(path, copy)
            with rosbag.Bag(str(copy), "a", allow_unindexed=True) as bag:
                for _ in bag.reindex():
                    pass
            opened = _Bag(path, rosbag.Bag(str(copy)), sequence, copy_dir)
        except (rosbag.ROSBagException, OSError, ValueError) as exc:
            shutil.rmtree(copy_dir, ignore_errors=True)
            self.notes.append(f"{path}: not indexed (recording cut short?) and reindexing failed "
                              f"({type(exc).__name__}: {exc})")
            return None
        self.notes.append(f"{path}: not indexed (recording cut short?); read a reindexed copy with "
                          f"{opened.topics.get(self.reference_topic, 0)} message(s) on {self.reference_topic}, "
                          f"the rest of the recording is lost")
        return opened

    def _usable(self, bag: _Bag) -> bool:
        """Check the needed topics; notes name what is missing and what the bag has."""
        topics = self.config.topics
        have = ", ".join(sorted(bag.topics)) or "none"
        needed = [("ground-truth", topics.gt_depth, "topics.gt_depth")]
        if self.mode == "recorded":
            needed.insert(0, ("prediction", topics.prediction, "topics.prediction (or run a model with --model)"))
        else:
            needed.insert(0, ("RGB", topics.rgb, "topics.rgb"))
        for what, topic, key in needed:
            if not bag.topics.get(topic):
                self.notes.append(f"{bag.path}: no messages on the {what} topic '{topic}' (topics in this bag: "
                                  f"{have}); set {key}")
                return False
        return True

    # ------------------------------------------------------------------ reading
    def records(self) -> Iterator[FrameRecord]:
        """One pass over every bag (notes and counts restart)."""
        self.notes, self.counts = [], {}
        bags = []
        for path, sequence in zip(self.paths, self._sequences):
            bag = self._open(path, sequence)
            if bag is not None and not self._usable(bag):
                bag.close()
                bag = None
            bags.append(bag)
        self.expected_frames = sum(b.topics.get(self.reference_topic, 0) for b in bags if b is not None)
        try:
            for bag in bags:
                if bag is not None:
                    yield from self._read(bag)
        finally:
            for bag in bags:
                if bag is not None:
                    bag.close()

    def _count(self, key: str, amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount

    def _streams(self, bag: _Bag) -> dict[str, str]:
        topics = self.config.topics
        streams = {topics.gt_depth: NEAREST}
        if self.mode == "recorded":
            streams[topics.rgb] = NEAREST
            streams[topics.prediction_info] = NEAREST
        if self.mode != "export":
            streams[topics.pose] = BRACKET
        if self.mode != "export" and self.config.scale.reads_rangefinder:
            streams[self.config.scale.rangefinder.topic] = NEAREST
        return {topic: kind for topic, kind in streams.items() if bag.topics.get(topic)}

    def _read(self, bag: _Bag) -> Iterator[FrameRecord]:
        topics, pairing = self.config.topics, self.config.pairing
        streams = self._streams(bag)
        pairer = StampPairer(REFERENCE, streams, pairing.tolerance, pairing.pose_tolerance,
                             pairing.max_lag)
        builder = _RecordBuilder(self, bag)
        wanted = [self.reference_topic, topics.camera_info, *streams]
        messages = bag.bag.read_messages(topics=wanted)
        while True:
            try:
                topic, msg, _ = next(messages)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - rosbag raises several types on damaged data
                self.notes.append(f"{bag.path}: reading stopped after {pairer.counts.references} frame(s) "
                                  f"({type(exc).__name__}: {exc}); frames before are kept")
                break
            if topic == topics.camera_info:
                builder.camera_info(msg)
                continue
            stamp = msg.header.stamp.to_sec()
            if topic == self.reference_topic:
                topic, payload = REFERENCE, msg
            else:
                payload = builder.pose_matrix(msg) if topic == topics.pose else msg
            for match in pairer.push(topic, stamp, payload):
                yield builder.record(match)
        for match in pairer.finish():
            yield builder.record(match)
        for topic, count in pairer.counts.unmatched.items():
            self._count(f"frames without {_topic_label(self.config, topic)}", count)
        for topic, count in pairer.counts.unused.items():
            self._count(f"unused {_topic_label(self.config, topic)} messages", count)
        optional = [topics.pose, topics.camera_info] + ([topics.prediction_info] if self.mode == "recorded" else [])
        for topic in optional if self.mode != "export" else []:
            if not bag.topics.get(topic):
                self._count(f"bags without {_topic_label(self.config, topic)}")


def _topic_label(config: LabellerConfig, topic: str) -> str:
    topics = config.topics
    names = {topics.gt_depth: "ground truth", topics.rgb: "RGB", topics.prediction_info: "DepthInfo",
             topics.pose: "pose", topics.camera_info: "camera_info", topics.prediction: "prediction",
             config.scale.rangefinder.topic: "rangefinder"}
    return f"{names.get(topic, topic)} ({topic})"


def sequence_names(paths: list[Path]) -> list[str]:
    """Bag file stems, made unique with a counter."""
    names: list[str] = []
    for path in paths:
        name = path.stem
        while name in names:
            name = f"{path.stem}_{len(names)}"
        names.append(name)
    return names


class _RecordBuilder:
    """Converts paired messages of one bag into FrameRecords (images converted only here)."""

    def __init__(self, source: BagFrameSource, bag: _Bag) -> None:
        self.source = source
        self.config = source.config
        self.bag = bag
        self.index = 0
        self.intrinsics: Optional[Intrinsics] = None
        self._mounts: dict[str, np.ndarray] = {}
        self._tf_static = self._read_tf_static()

    def camera_info(self, msg) -> None:
        try:
            self.intrinsics = conversions.intrinsics_from_camera_info(msg)
        except BadInputError:
            self.source._count("bad camera_info messages")

    @staticmethod
    def pose_matrix(msg) -> np.ndarray:
        """PoseStamped or Odometry -> 4x4 T_map_base."""
        pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
        return conversions.pose_to_matrix(pose)

    def _read_tf_static(self) -> dict[str, tuple[str, np.ndarray]]:
        """child -> (parent, T_parent_child) from the bag's static transforms."""
        edges: dict[str, tuple[str, np.ndarray]] = {}
        topic = self.config.topics.tf_static
        if not self.bag.bag.get_message_count(topic):
            return edges
        try:
            for _, msg, _ in self.bag.bag.read_messages(topics=[topic]):
                for transform in msg.transforms:
                    edges[transform.child_frame_id.lstrip("/")] = (transform.header.frame_id.lstrip("/"),
                                                                   conversions.transform_to_matrix(transform))
        except Exception:  # noqa: BLE001 - damaged static TF: the fallback mount is used
            self.source._count("unreadable /tf_static")
        return edges

    def _static_chain(self, frame_id: str) -> tuple[np.ndarray, bool]:
        """(T_base_frame from the bag's static transforms, whether the chain reaches the base frame)."""
        chain, frame = np.eye(4), frame_id.lstrip("/")
        while frame != self.config.frames.base and frame in self._tf_static:
            parent, transform = self._tf_static[frame]
            chain, frame = transform @ chain, parent
        return chain, frame == self.config.frames.base

    def mount(self, frame_id: str) -> np.ndarray:
        """T_base_optical for images stamped ``frame_id`` (TF chain, else the configured fallback)."""
        if frame_id not in self._mounts:
            frames = self.config.frames
            chain, reached = self._static_chain(frame_id)
            if not reached:
                x, y, z, roll, pitch, yaw = frames.mount_fallback
                chain = make_transform(Rotation.from_euler("xyz", (roll, pitch, yaw)).as_matrix(), (x, y, z))
                self.source._count(f"image frames without TF to {frames.base} (fallback mount used)")
            elif frames.append_optical:
                chain = chain @ optical_in_camera()
            self._mounts[frame_id] = chain
        return self._mounts[frame_id]

    def record(self, match: Match) -> FrameRecord:
        topics = self.config.topics
        mode = self.source.mode
        record = FrameRecord(sequence=self.bag.sequence, index=self.index, stamp=match.stamp,
                             intrinsics=self.intrinsics, frame_id=match.reference.header.frame_id)
        self.index += 1
        try:
            if mode == "recorded":
                info = match.nearest.get(topics.prediction_info)
                record.prediction = self._prediction(match.reference, info)
                if info is not None:
                    record.model, record.model_ms = info.model, float(info.model_latency_ms)
                rgb_msg = match.nearest.get(topics.rgb)
                record.rgb = conversions.image_to_rgb(rgb_msg) if rgb_msg is not None else None
            else:
                record.rgb = conversions.image_to_rgb(match.reference)
            gt_msg = match.nearest.get(topics.gt_depth)
            if gt_msg is not None:
                record.gt = conversions.image_to_depth(gt_msg)
        except (BadInputError, ValueError) as exc:  # ValueError: an unknown DepthInfo.depth_kind
            record.skip = Skip("bad_message", str(exc))
            return record
        if topics.pose in match.bracket:
            base_pose = interpolate_pose(match.stamp, *match.bracket[topics.pose])
            if base_pose is not None:
                record.pose = base_pose @ self.mount(record.frame_id)
                record.rangefinder = self._range_reading(match.nearest.get(self.config.scale.rangefinder.topic),
                                                         base_pose)
        if record.gt is None:
            tolerance = self.config.pairing.tolerance
            record.skip = Skip("unmatched_gt", f"no ground truth within {tolerance} s of {match.stamp:.3f}")
        return record

    def _range_reading(self, msg, base_pose: np.ndarray) -> Optional[RangeReading]:
        """A paired Range message within its own limits, with the sensor's pose from the static mount."""
        if msg is None or not msg.min_range <= msg.range <= msg.max_range:
            return None
        chain, reached = self._static_chain(msg.header.frame_id)
        if not reached:
            self.source._count(f"rangefinder frames without TF to {self.config.frames.base}")
            return None
        return RangeReading(float(msg.range), base_pose @ chain)

    def _prediction(self, msg, info) -> DepthPrediction:
        override = PREDICTION_KINDS[self.config.scoring.prediction_kind]
        depth = conversions.image_to_depth(msg)  # (H, W) float32, NaN invalid
        if info is None:
            self.source._count("predictions without DepthInfo")
            return DepthPrediction(depth, DepthKind(override if override is not None else DepthKind.METRIC))
        # depth_node's depth/image carries metres (REP 118); other topics (depth/relative) the DepthInfo's kind.
        recorded_kind = DepthKind.METRIC if self.config.topics.prediction.endswith("depth/image") else info.depth_kind
        kind = DepthKind(override if override is not None else recorded_kind)
        scale, shift = (info.scale, info.shift) if math.isfinite(info.scale) else (1.0, 0.0)
        return DepthPrediction(depth, kind, float(scale), float(shift), steps=info.denoising_steps,
                               warm_start=info.warm_start, warm=info.warm)
