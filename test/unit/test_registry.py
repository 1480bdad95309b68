import subprocess
import sys

import numpy as np
import pytest

from depth_ms.core.config import ConfigError
from depth_ms.core.types import DepthKind, Frame
from depth_ms.models import registry
from depth_ms.models.base import DepthEstimator, EstimatorError


def test_oracle_returns_ground_truth_with_known_distortion():
    gt = np.array([[1.0, 2.0], [np.nan, 4.0]], np.float32)
    frame = Frame(rgb=np.zeros((2, 2, 3), np.uint8), stamp=0.0, gt_depth=gt)
    oracle = registry.create("oracle")
    assert isinstance(oracle, DepthEstimator) and oracle.kind == DepthKind.METRIC
    np.testing.assert_array_equal(oracle.predict(frame).depth, gt)
    distorted = registry.create("oracle", {"scale": 2.0, "shift": 0.5})
    np.testing.assert_allclose(distorted.predict(frame).depth, gt * 2 + 0.5)
    with pytest.raises(EstimatorError, match="needs ground-truth"):
        oracle.predict(Frame(rgb=frame.rgb, stamp=0.0))


def test_unknown_model_and_option_are_named():
    with pytest.raises(EstimatorError, match="unknown model 'nope'.*oracle"):
        registry.create("nope")
    with pytest.raises(ConfigError, match="'gain'"):
        registry.create("oracle", {"gain": 2})


def test_core_models_and_sim_never_import_ros():
    code = ("import sys; import depth_ms.core.products, depth_ms.models.registry, depth_ms.sim; "
            "import depth_ms.models.oracle; "
            "bad = [m for m in ('rospy', 'rosbag', 'cv_bridge', 'sensor_msgs', 'mindspore', 'torch') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin"},
                            cwd=__file__.rsplit("/test/", 1)[0])
    assert result.returncode == 0, result.stdout + result.stderr
