"""The depth node against bad input, with a real roscore: clear log lines, frames skipped or converted,
node alive."""
import time

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ms.msg import DepthInfo

from conftest import wait_for
from helpers import Recorder, image_msg, info_msg

OUT = "/depth_node/depth/"


@pytest.fixture
def node(rosnode, launch):
    proc = launch(command=["rosrun", "depth_ms", "depth_node", "_model:=oracle", "_stats_period:=0"])
    rospy = rosnode
    pubs = {
        "rgb": rospy.Publisher("/camera/rgb/image_raw", Image, queue_size=1),
        "gt": rospy.Publisher("/camera/depth/image_raw", Image, queue_size=1),
        "info": rospy.Publisher("/camera/rgb/camera_info", CameraInfo, queue_size=1, latch=True),
    }
    rec = Recorder({OUT + "image": Image, OUT + "points": PointCloud2, OUT + "info": DepthInfo})
    wait_for(lambda: all(p.get_num_connections() > 0 for k, p in pubs.items() if k != "info")
             and all(s.get_num_connections() > 0 for s in rec.subscribers), 30, message="node connections")
    yield proc, pubs, rec
    rec.close()
    for pub in pubs.values():
        pub.unregister()


def _send(pubs, rgb_array, encoding, stamp, gt=None):
    height, width = rgb_array.shape[:2]
    if gt is None:
        gt = np.full((height, width), 4.0, np.float32)
    pubs["gt"].publish(image_msg(gt, "32FC1", stamp))
    pubs["rgb"].publish(image_msg(rgb_array, encoding, stamp))


def _answered(rec, stamp, timeout=5.0):
    try:
        wait_for(lambda: rec.by_stamp(OUT + "info", stamp) is not None, timeout, message=f"output {stamp}")
        return True
    except AssertionError:
        return False


def _depth(rec, stamp):
    """depth/image of ``stamp``: its own topic, so it may arrive after depth/info."""
    wait_for(lambda: rec.by_stamp(OUT + "image", stamp) is not None, 5, message=f"depth {stamp}")
    return rec.by_stamp(OUT + "image", stamp)


def test_bad_input_is_reported_skipped_or_converted_and_node_survives(node):
    proc, pubs, rec = node
    rgb = np.random.default_rng(1).integers(0, 255, (6, 8, 3), dtype=np.uint8)

    # 1. no camera_info yet: depth without cloud, and the log says why
    _send(pubs, rgb, "rgb8", 10.0)
    assert _answered(rec, 10.0)
    time.sleep(0.3)
    assert rec.by_stamp(OUT + "points", 10.0) is None
    assert "no camera_info" in proc.output()

    # 2. converted encodings produce outputs with the input header (and a cloud now)
    pubs["info"].publish(info_msg(8, 6, 0.0))
    time.sleep(0.3)
    for stamp, (array, encoding) in enumerate([(rgb[..., 0], "mono8"), (np.dstack([rgb, rgb[..., :1]]), "bgra8"),
                                              (rgb, "bgr8")], start=11):
        _send(pubs, array, encoding, float(stamp))
        assert _answered(rec, float(stamp)), encoding
        depth = _depth(rec, float(stamp))
        assert depth.encoding == "32FC1" and depth.header.frame_id == "cam_optical"
        wait_for(lambda: rec.by_stamp(OUT + "points", float(stamp)) is not None, 5, message="cloud")

    # 3. depth encodings on the RGB topic are rejected with the encoding named, and counted
    for stamp, (array, encoding) in enumerate([(np.ones((6, 8), np.uint16), "16UC1"),
                                              (np.ones((6, 8), np.float32), "32FC1")], start=20):
        _send(pubs, array, encoding, float(stamp))
        assert not _answered(rec, float(stamp), timeout=1.5)
        assert f"unsupported image encoding '{encoding}'" in proc.output()
    _send(pubs, rgb, "rgb8", 22.0)
    assert _answered(rec, 22.0)
    assert rec.by_stamp(OUT + "info", 22.0).frames_rejected == 2

    # 4. odd size with camera_info of another aspect ratio: depth yes, cloud no, warning
    odd = np.random.default_rng(2).integers(0, 255, (17, 33, 3), dtype=np.uint8)
    _send(pubs, odd, "rgb8", 23.0)
    assert _answered(rec, 23.0)
    assert _depth(rec, 23.0).width == 33
    time.sleep(0.3)
    assert rec.by_stamp(OUT + "points", 23.0) is None
    assert "other aspect ratio" in proc.output() and "image size changed" in proc.output()

    # 5. same aspect ratio, other size: intrinsics rescaled, cloud published
    big = np.random.default_rng(3).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    _send(pubs, big, "rgb8", 24.0)
    assert _answered(rec, 24.0)
    wait_for(lambda: rec.by_stamp(OUT + "points", 24.0) is not None, 5, message="rescaled cloud")
    assert "rescaling the intrinsics" in proc.output()

    # 6. NaN / inf / negative ground truth become NaN in the output; time jumping backwards resets
    gt = np.full((12, 16), 4.0, np.float32)
    gt[0, 0], gt[0, 1], gt[0, 2] = np.nan, np.inf, -3.0
    _send(pubs, big, "rgb8", 5.0, gt=gt)
    assert _answered(rec, 5.0)
    from cv_bridge import CvBridge
    out = CvBridge().imgmsg_to_cv2(_depth(rec, 5.0))
    assert np.isnan(out[0, :3]).all() and np.allclose(out[1:], 4.0)
    assert "time jumped backwards" in proc.output()

    assert proc.alive(), proc.output()


def test_oracle_without_ground_truth_and_an_off_centre_principal_point_are_named(rosnode, launch):
    """An fpv_cam-style camera_info (cx, cy for 640x480 on a 320x240 image) and no ground-truth publisher:
    both are said in the log instead of silence."""
    rgb_pub = rosnode.Publisher("/camera/rgb/image_raw", Image, queue_size=1)
    info_pub = rosnode.Publisher("/camera/rgb/camera_info", CameraInfo, queue_size=1, latch=True)
    proc = launch(command=["rosrun", "depth_ms", "depth_node", "_model:=oracle", "_stats_period:=0"])
    wait_for(lambda: rgb_pub.get_num_connections() > 0, 30, message="node connection")
    off_centre = info_msg(320, 240, 0.0)
    off_centre.K = [277.0, 0.0, 320.5, 0.0, 277.0, 240.5, 0.0, 0.0, 1.0]
    info_pub.publish(off_centre)
    rgb = np.zeros((240, 320, 3), np.uint8)
    for stamp in range(20):
        rgb_pub.publish(image_msg(rgb, "rgb8", float(stamp)))
        time.sleep(0.25)
    assert "needs ground-truth depth on /camera/depth/image_raw, which has no publisher" in proc.output()
    rgb_pub.unregister()
    info_pub.unregister()
    assert proc.alive()


def test_off_centre_principal_point_is_warned_once(node):
    proc, pubs, rec = node
    info = info_msg(320, 240, 0.0)
    info.K = [277.0, 0.0, 320.5, 0.0, 277.0, 240.5, 0.0, 0.0, 1.0]
    pubs["info"].publish(info)
    time.sleep(0.3)
    for stamp in (30.0, 31.0):
        _send(pubs, np.zeros((240, 320, 3), np.uint8), "rgb8", stamp)
        assert _answered(rec, stamp)
    assert proc.output().count("principal point (320.5, 240.5) is far from the centre") == 1
