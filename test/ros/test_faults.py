"""Faults injected into a live ROS graph (real roscore, real rosbag play, the shipped Marigold or the oracle).

Each test names the fault in its name and asserts what the node does about it: resumes, resets and says why,
keeps memory bounded, stops promptly, or says in the log why nothing metric comes out.
"""
import os
import signal
import time

import pytest
import tf2_ros
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from depth_ms.msg import DepthInfo
from depth_ms.ros import conversions
from depth_ms.ros.sim_bag import write_sim_bag
from depth_ms.sim import DroneSimulator, load_sim_config

from conftest import wait_for
from helpers import Recorder

pytest.importorskip("mindspore")

OUT = "/depth_node/depth/"
WIDTH, HEIGHT = 160, 120
RGB, INFO, GT = "/camera/rgb/image_raw", "/camera/rgb/camera_info", "/camera/depth/image_raw"


@pytest.fixture(scope="module")
def simulator():
    return DroneSimulator(load_sim_config({"width": WIDTH, "height": HEIGHT}))


@pytest.fixture(scope="module")
def flight_bag(tmp_path_factory, simulator):
    """Four seconds of a 10 Hz flight, stamped in 2001 (not the ROS clock of a live graph)."""
    return write_sim_bag(simulator, tmp_path_factory.mktemp("bags") / "flight.bag", 40)


def _marigold(launch, *args):
    return launch("drone_depth.launch", "model:=marigold", "mode:=pynative", "sim:=false", "scale:=none",
                  f"warm_up:=[{WIDTH}, {HEIGHT}]", *args)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def test_bag_played_fast_without_clock_in_a_loop_stays_warm_counts_resets_and_keeps_latency(rosnode, launch,
                                                                                          flight_bag):
    """rosbag play -r 4 -l without --clock: stamps from another epoch, four times faster than recorded, looping.
    Warm frames stay warm (one clock: the stamps'), every loop resets the estimator and says so, and the
    latency is measured from the arrival instead of from a stamp 25 years old."""
    rec = Recorder({OUT + "info": DepthInfo})
    node = _marigold(launch)
    wait_for(lambda: "warm-up (compile)" in node.output(), 120, message="the model warm-up")
    player = launch(command=["rosbag", "play", "-q", "-r", "4", "-l", str(flight_bag)])
    wait_for(lambda: rec.get(OUT + "info") and rec.get(OUT + "info")[-1].resets >= 2, 120, message="two loops")
    player.stop()
    rec.close()
    infos = rec.get(OUT + "info")
    reasons = [i.cold_reason for i in infos if not i.warm]
    assert set(reasons) <= {"first", "reset"} and reasons.count("reset") >= 2, reasons
    assert sum(i.warm for i in infos) >= len(infos) - len(reasons) and sum(i.warm for i in infos) > len(infos) / 2
    assert all(0 <= i.latency_ms < 5000 for i in infos), [i.latency_ms for i in infos]
    assert "time jumped backwards" in node.output() and "(a bag without --clock?)" in node.output()


def test_camera_publisher_dies_and_comes_back_the_node_resumes_cold(rosnode, launch, simulator):
    rec = Recorder({OUT + "info": DepthInfo})
    node = _marigold(launch)
    wait_for(lambda: "warm-up (compile)" in node.output(), 120, message="the model warm-up")

    def stream(frames: int, first: int) -> None:
        publisher = rosnode.Publisher(RGB, Image, queue_size=1)
        wait_for(lambda: publisher.get_num_connections() > 0, 20, message="connection")
        for index in range(first, first + frames):
            frame = simulator.render(index)
            publisher.publish(conversions.rgb_to_image(frame.rgb, _header(rosnode, index)))
            time.sleep(0.1)
        publisher.unregister()  # the camera driver dies

    stream(15, 0)
    time.sleep(2.0)
    returned = rosnode.Time.now()  # (rospy numbers header.seq itself: stamps tell the streams apart)
    stream(15, 15)
    wait_for(lambda: sum(i.header.stamp > returned for i in rec.get(OUT + "info")) >= 3, 30,
             message="frames after the camera returned")
    rec.close()
    after = [i for i in rec.get(OUT + "info") if i.header.stamp > returned]
    assert not after[0].warm and after[0].cold_reason == "time_jump"  # two seconds without images
    assert any(i.warm for i in after[1:]) and node.alive()


def _header(rosnode, index: int) -> Header:
    return Header(seq=index, stamp=rosnode.Time.now(), frame_id="camera_link_optical")


def test_a_burst_of_200_images_is_handled_latest_only_in_bounded_memory(rosnode, launch, simulator):
    rec = Recorder({OUT + "info": DepthInfo})
    node = _marigold(launch)
    wait_for(lambda: "warm-up (compile)" in node.output(), 120, message="the model warm-up")
    publisher = rosnode.Publisher(RGB, Image, queue_size=200)
    wait_for(lambda: publisher.get_num_connections() > 0, 20, message="connection")
    rgb = simulator.render(0).rgb
    publisher.publish(conversions.rgb_to_image(rgb, _header(rosnode, 0)))
    wait_for(lambda: rec.get(OUT + "info"), 30, message="a first frame")
    rss_before = _rss_mb(node.node_pid())
    for index in range(1, 201):
        publisher.publish(conversions.rgb_to_image(rgb, _header(rosnode, index)))
    time.sleep(5.0)
    rss_after = _rss_mb(node.node_pid())
    publisher.unregister()
    rec.close()
    last = rec.get(OUT + "info")[-1]
    assert last.frames_out < 60 and last.frames_out + last.frames_dropped <= last.frames_in <= 201
    assert rss_after - rss_before < 100, (rss_before, rss_after)
    assert node.alive()


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_the_node_within_3_s_without_a_traceback(rosnode, launch, simulator, signal_number):
    proc = launch(command=["rosrun", "depth_ms", "depth_node", "_model:=marigold", "_mode:=pynative",
                           "_scale/source:=none", f"_warm_up_size:=[{WIDTH},{HEIGHT}]"])
    wait_for(lambda: "depth_node running model" in proc.output(), 120, message="the node")
    publisher = rosnode.Publisher(RGB, Image, queue_size=1)
    wait_for(lambda: publisher.get_num_connections() > 0, 20, message="connection")
    rgb = simulator.render(0).rgb
    for index in range(5):  # the worker is busy with frames when the signal comes
        publisher.publish(conversions.rgb_to_image(rgb, _header(rosnode, index)))
        time.sleep(0.1)
    start = time.monotonic()
    os.kill(proc.proc.pid, signal_number)
    proc.proc.wait(timeout=10)
    publisher.unregister()
    assert time.monotonic() - start < 3.0
    assert "Traceback" not in proc.output(), proc.output()


def test_camera_info_changing_size_mid_run_rescales_the_cloud(rosnode, launch, simulator):
    rec = Recorder({OUT + "camera_info": CameraInfo, OUT + "info": DepthInfo})
    launch(command=["rosrun", "depth_ms", "depth_node", "_model:=oracle", "_stats_period:=0"])
    pubs = {topic: rosnode.Publisher(topic, kind, queue_size=5)
            for topic, kind in ((RGB, Image), (GT, Image), (INFO, CameraInfo))}
    wait_for(lambda: all(p.get_num_connections() for p in pubs.values()), 20, message="connections")
    big = simulator.render(0)
    small = DroneSimulator(load_sim_config({"width": WIDTH // 2, "height": HEIGHT // 2})).render(0)
    for index, frame in enumerate([big] * 3 + [small] * 3):
        header = _header(rosnode, index)
        pubs[INFO].publish(conversions.camera_info_from_intrinsics(frame.intrinsics, header))
        time.sleep(0.05)
        pubs[GT].publish(conversions.depth_to_image(frame.depth, header))
        pubs[RGB].publish(conversions.rgb_to_image(frame.rgb, header))
        wait_for(lambda: len(rec.get(OUT + "camera_info")) > index, 10, message=f"frame {index}")
    rec.close()
    for pub in pubs.values():
        pub.unregister()
    sizes = [(m.width, m.height, round(m.K[0], 3)) for m in rec.get(OUT + "camera_info")]
    assert sizes == [(WIDTH, HEIGHT, round(big.intrinsics.fx, 3))] * 3 + \
        [(WIDTH // 2, HEIGHT // 2, round(small.intrinsics.fx, 3))] * 3
    assert rec.get(OUT + "info")[-1].resets == 1  # the size change reset the estimator


def test_tf_absent_then_present_the_metric_scale_starts_with_it(rosnode, launch, simulator, tmp_path):
    """A relative map (the oracle in affine disparity) with scale ground_plane: without TF no metric output and
    the log says why; once map -> camera_link_optical is broadcast, metric frames follow."""
    oracle = tmp_path / "oracle.yaml"
    oracle.write_text("kind: affine_disparity\nscale: 3.0\nshift: 0.1\n")
    rec = Recorder({OUT + "info": DepthInfo, OUT + "image": Image})
    node = launch("drone_depth.launch", "model:=oracle", f"model_config:={oracle}", "sim:=false",
                  "scale:=ground_plane")
    pubs = {topic: rosnode.Publisher(topic, kind, queue_size=5)
            for topic, kind in ((RGB, Image), (GT, Image), (INFO, CameraInfo))}
    wait_for(lambda: all(p.get_num_connections() for p in pubs.values()), 30, message="connections")
    broadcaster = tf2_ros.TransformBroadcaster()
    tf_start = None
    for index in range(30):
        frame, header = simulator.render(index * 5), _header(rosnode, index)
        if index >= 15:
            tf_start = tf_start or header.stamp
            broadcaster.sendTransform(conversions.matrix_to_transform(frame.T_map_optical, "map",
                                                                      "camera_link_optical", header.stamp))
        pubs[INFO].publish(conversions.camera_info_from_intrinsics(frame.intrinsics, header))
        pubs[GT].publish(conversions.depth_to_image(frame.depth, header))
        pubs[RGB].publish(conversions.rgb_to_image(frame.rgb, header))
        time.sleep(0.15)
    time.sleep(0.5)
    rec.close()
    for pub in pubs.values():
        pub.unregister()
    infos = rec.get(OUT + "info")
    without = [i for i in infos if i.header.stamp < tf_start]
    assert without and all(not i.metric and i.scale_note == "no fresh camera pose" for i in without)
    assert any(i.metric for i in infos if i.header.stamp > tf_start)
    assert len(rec.get(OUT + "image")) == sum(i.metric for i in infos)
    assert "no metric scale (no fresh camera pose)" in node.output()
    assert "metric scale from ground_plane" in node.output()


def test_native_library_built_for_another_cpu_is_refused_on_rosout_and_the_node_runs(rosnode, launch, tmp_path):
    """A workspace copied to a CPU without the build's extensions: a /rosout warning, MindSpore's kernels."""
    from rosgraph_msgs.msg import Log

    from depth_ms.models.native_library import ISA_FILE, LIBRARY, native_library

    built = native_library()
    if built is None:
        pytest.skip("native kernels disabled" if os.environ.get("DEPTH_MS_NATIVE_KERNELS") == "0"
                    else "native kernels not built")
    (tmp_path / LIBRARY).write_bytes(open(built, "rb").read())
    (tmp_path / ISA_FILE).write_text("avx2\navx9000\n")
    rec = Recorder({"/rosout": Log, OUT + "relative": Image})
    launch("drone_depth.launch", "model:=midas", "scale:=none", "sim_width:=160", "sim_height:=120",
           "sim_rate:=5", env={"DEPTH_MS_NATIVE_LIBRARY": str(tmp_path / LIBRARY)})
    wait_for(lambda: len(rec.get(OUT + "relative")) >= 3, 120, message="depth from MindSpore's kernels")
    rec.close()
    warnings = [m for m in rec.get("/rosout") if m.name == "/depth_node" and m.level == Log.WARN]
    assert any("avx9000" in m.msg and "MindSpore's kernels" in m.msg for m in warnings), [m.msg for m in warnings]


def test_a_second_launch_with_another_model_on_the_same_roscore_starts(rosnode, launch):
    """The first launch's parameters stay on the server (midas' estimator keys); the next launch, with another
    model, clears its nodes' namespaces and runs instead of refusing keys it does not know."""
    rec = Recorder({OUT + "info": DepthInfo})
    args = ("scale:=none", "sim_width:=160", "sim_height:=120", "sim_rate:=5")
    first = launch("drone_depth.launch", "model:=midas", *args)
    wait_for(lambda: rec.get(OUT + "info"), 180, message="midas depth")
    first.stop()
    second = launch("drone_depth.launch", "model:=oracle", *args)
    wait_for(lambda: any(i.model == "oracle" for i in rec.get(OUT + "info")), 120, message="oracle depth")
    rec.close()
    assert "unknown config keys" not in second.output() and second.alive()
