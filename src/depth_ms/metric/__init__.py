"""Metric depth from a relative map and the drone's own state (pose, rangefinder), without ROS.

``ScaleConfig`` (the ``scale`` keys of the node and the labeller), ``MetricScaler`` (one call per
frame: fit, filter, convert), and the pieces it is made of: ground-plane depth from the camera pose,
a robust affine fit, and the temporal filter of the fitted parameters.
"""
from .config import SCALE_SOURCES, ScaleConfig, load_scale_config
from .scaler import MetricScaler, ScaleContext, ScaleEstimate, to_metres

__all__ = ["SCALE_SOURCES", "ScaleConfig", "load_scale_config", "MetricScaler", "ScaleContext", "ScaleEstimate",
           "to_metres"]
