"""Configuration of the offline labeller (``config/labeller.yaml``), checked strictly.

The same YAML feeds ``rosrun depth_ms label_bag --config`` and ``launch/label_bag.launch``; unknown
keys are rejected with their dotted path, bad values with the key and the allowed range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from depth_ms.core.config import ConfigError, load_config
from depth_ms.core.types import DepthKind
from depth_ms.metric.config import ScaleConfig

ALIGNMENTS = ("auto", "none", "depth", "disparity")
SCOPES = ("frame", "sequence")
PREDICTION_KINDS = {"auto": None, "metric": DepthKind.METRIC, "affine_depth": DepthKind.AFFINE_DEPTH,
                    "affine_disparity": DepthKind.AFFINE_DISPARITY}


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass
class TopicsConfig:
    """Bag topics (defaults: PX4 SITL ``iris_depth_camera`` and the depth node under ``/depth_node``)."""

    rgb: str = "/camera/rgb/image_raw"
    gt_depth: str = "/camera/depth/image_raw"  # 32FC1 metres (or 16UC1 mm), NaN / 0 = no return
    camera_info: str = "/camera/rgb/camera_info"
    pose: str = "/mavros/local_position/pose"  # PoseStamped of the body frame (frames.base) in map
    tf_static: str = "/tf_static"  # mount base -> camera optical frame
    prediction: str = "/depth_node/depth/image"  # recorded predictions (mode "recorded")
    prediction_info: str = "/depth_node/depth/info"  # depth_ms/DepthInfo with the same stamps

    def validate(self) -> None:
        for key in ("rgb", "gt_depth", "camera_info", "prediction"):
            _require(bool(getattr(self, key).strip()), f"topics.{key}", "must not be empty")


@dataclass
class FramesConfig:
    """Frame names and the fallback camera mount for turning the body pose into the camera pose."""

    base: str = "base_link"  # the frame whose pose the pose topic gives
    # true when images are stamped with a body-axis camera frame (x forward; PX4 SITL: camera_link):
    # the REP 103 optical rotation is then appended to the TF chain base -> image frame
    append_optical: bool = False
    # T_base_optical as [x, y, z, roll, pitch, yaw] (m, rad; tf's fixed-axis rpy) when /tf_static does
    # not connect base to the image's frame; default: camera at the body origin looking forward (REP 103).
    mount_fallback: tuple[float, float, float, float, float, float] = (0.0, 0.0, 0.0, -math.pi / 2, 0.0,
                                                                      -math.pi / 2)

    def validate(self) -> None:
        _require(bool(self.base.strip()), "frames.base", "must not be empty")


@dataclass
class PairingConfig:
    """Matching messages of different topics by header stamp."""

    tolerance: float = 0.01  # s: GT, RGB and DepthInfo must be this close to the frame's stamp
    pose_tolerance: float = 0.1  # s: poses bracketing the stamp are interpolated if this close
    max_lag: float = 2.0  # s of bag time a frame waits for its partners before it is resolved as is

    def validate(self) -> None:
        _require(self.tolerance >= 0, "pairing.tolerance", f"must be >= 0, got {self.tolerance}")
        _require(self.pose_tolerance >= 0, "pairing.pose_tolerance", f"must be >= 0, got {self.pose_tolerance}")
        _require(self.max_lag > self.tolerance, "pairing.max_lag",
                 f"must be > pairing.tolerance ({self.tolerance}), got {self.max_lag}")


@dataclass
class ScoringConfig:
    """Valid mask, alignment and distance bins (design.md section 6)."""

    min_depth: float = 0.2  # m: ground truth must satisfy min_depth < gt < max_depth
    max_depth: float = 65.535  # m: aligned predictions are clipped to [min_depth, max_depth]
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)  # pixels ignored at top, bottom, left, right
    alignment: str = "auto"  # auto (none with a scale.source, else by DepthKind) | none | depth | disparity
    scope: str = "frame"  # frame: one scale/shift per frame | sequence: one per bag
    prediction_kind: str = "auto"  # auto (DepthInfo, else metric) | metric | affine_depth | affine_disparity
    resize_prediction: bool = True  # predictions of the GT's aspect ratio but another size are resized
    distance_bins: tuple[float, float] = (10.0, 30.0)  # m: near < first <= mid < second <= far

    def validate(self) -> None:
        _require(0.0 <= self.min_depth < self.max_depth, "scoring.min_depth",
                 f"need 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        _require(all(c >= 0 for c in self.crop), "scoring.crop", f"margins must be >= 0, got {list(self.crop)}")
        _require(self.alignment in ALIGNMENTS, "scoring.alignment",
                 f"must be one of {', '.join(ALIGNMENTS)}, got '{self.alignment}'")
        _require(self.scope in SCOPES, "scoring.scope", f"must be frame or sequence, got '{self.scope}'")
        _require(self.prediction_kind in PREDICTION_KINDS, "scoring.prediction_kind",
                 f"must be one of {', '.join(PREDICTION_KINDS)}, got '{self.prediction_kind}'")
        near, far = self.distance_bins
        _require(self.min_depth < near < far < self.max_depth, "scoring.distance_bins",
                 f"need min_depth < near < far < max_depth, got {list(self.distance_bins)}")


@dataclass
class TemporalConfig:
    """TAE and flicker between consecutive scored frames."""

    max_gap: float = 0.5  # s: consecutive frames further apart are not compared
    static_threshold: float = 0.01  # a pixel is static when its GT changes less than this fraction
    min_static_pixels: int = 100  # fewer static pixels: flicker is n/a for that pair

    def validate(self) -> None:
        _require(self.max_gap > 0, "temporal.max_gap", f"must be > 0, got {self.max_gap}")
        _require(self.static_threshold > 0, "temporal.static_threshold",
                 f"must be > 0, got {self.static_threshold}")
        _require(self.min_static_pixels >= 1, "temporal.min_static_pixels",
                 f"must be >= 1, got {self.min_static_pixels}")


@dataclass
class LiveConfig:
    """Mode (b) as the live node runs: frames that arrive while the model is busy are dropped.

    The node keeps only the newest image while it infers (latest-only slot), so a model slower than the
    camera skips frames and a streaming estimator bridges longer gaps. With ``drop_frames`` the labeller
    replays the bag on the stamps' clock the same way: a frame is processed when the model is free, the
    newest frame that arrived meanwhile is next, the others are dropped (counted, not scored).
    """

    drop_frames: bool = False
    model_ms: float = 0.0  # model time per frame on the stamps' clock; 0 = each frame's measured time

    def validate(self) -> None:
        _require(self.model_ms >= 0, "live.model_ms", f"must be >= 0, got {self.model_ms}")


@dataclass
class OutputsConfig:
    """What goes into the output folder besides per_frame.csv, summary.json and the reports."""

    labels: bool = True  # labels/{gt,pred}/<sequence>_<index>.png (16-bit mm) and .npy (float32 m)
    bag: bool = False  # labels.bag: aligned predictions and error images for RViz replay
    dataset: bool = False  # dataset/: RGB + GT depth pairs with index.csv (training input)
    samples: int = 4  # sample frames in the report (evenly spaced, plus the worst)
    error_range: float = 0.25  # signed relative error mapped onto the full colour scale of error maps

    def validate(self) -> None:
        _require(self.samples >= 0, "outputs.samples", f"must be >= 0, got {self.samples}")
        _require(self.error_range > 0, "outputs.error_range", f"must be > 0, got {self.error_range}")


@dataclass
class LabellerConfig:
    """Everything ``label_bag`` reads from ``config/labeller.yaml`` (docs/labeller.md)."""

    model: str = ""  # "" = score the predictions recorded in the bag; else a registered estimator
    estimator: dict = field(default_factory=dict)  # options of that estimator
    device: str = "cpu"  # cpu | gpu | ascend (MindSpore models)
    mode: str = "pynative"  # pynative | graph (MindSpore models)
    time_jump_tolerance: float = 0.5  # s a stamp may go back before the estimator state is reset
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    pairing: PairingConfig = field(default_factory=PairingConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)  # metric scale of relative maps, as depth_node's ~scale

    @property
    def runs_model(self) -> bool:
        """True in mode (b): run ``model`` over the RGB frames instead of scoring recorded predictions."""
        return bool(self.model)

    def validate(self) -> None:
        _require(self.device in ("cpu", "gpu", "ascend"), "device",
                 f"must be cpu, gpu or ascend, got '{self.device}'")
        _require(self.mode in ("pynative", "graph"), "mode", f"must be pynative or graph, got '{self.mode}'")
        _require(self.time_jump_tolerance >= 0, "time_jump_tolerance",
                 f"must be >= 0, got {self.time_jump_tolerance}")
        for part in (self.topics, self.frames, self.pairing, self.scoring, self.temporal, self.live, self.outputs,
                     self.scale):
            part.validate()


def load_labeller_config(source: Union[str, Path, Mapping[str, Any], None] = None) -> LabellerConfig:
    """LabellerConfig from a YAML path or a mapping (None = defaults); ConfigError names bad keys.

    With a ``scale.source``, alignment ``auto`` means ``none``: the metres the node would publish are scored
    as they are (a least-squares alignment to the ground truth would hide the scale's error).
    """
    config = load_config(LabellerConfig, source)
    if config.scale.source != "none" and config.scoring.alignment == "auto":
        config.scoring.alignment = "none"
    return config
