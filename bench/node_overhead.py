#!/usr/bin/env python3
"""Per-frame overhead of depth_node outside the model: conversion + products + publish.

Starts its own roscore, subscribes to every output (rospy skips serialisation without subscribers),
feeds simulator frames through ``DepthNode.process`` with the oracle, and prints a table per resolution.
Also times the naive ``sensor_msgs.point_cloud2.create_cloud`` for the same cloud, for comparison.

    source scripts/env.sh && python bench/node_overhead.py [--frames 30]
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import time

import numpy as np
from tables import machine_line, markdown_table


def _start_roscore() -> subprocess.Popen:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ["ROS_MASTER_URI"] = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(["roscore", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    import rosgraph
    while not rosgraph.is_master_online():
        time.sleep(0.2)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    core = _start_roscore()
    try:
        run(args.frames)
    finally:
        os.killpg(core.pid, signal.SIGINT)
        core.wait()


def run(frames: int) -> None:
    import rospy
    from sensor_msgs import point_cloud2
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from depth_ms.core.node_config import DepthNodeConfig
    from depth_ms.metric import ScaleConfig
    from depth_ms.models.oracle import OracleEstimator
    from depth_ms.msg import DepthInfo
    from depth_ms.ros import conversions
    from depth_ms.ros.depth_node import DepthNode, _Pending
    from depth_ms.ros.sim_messages import SimMessages
    from depth_ms.sim import DroneSimulator, load_sim_config

    rospy.init_node("bench_node_overhead", disable_signals=True)
    node = DepthNode(OracleEstimator(), DepthNodeConfig(stats_period=0), ScaleConfig())  # the oracle is metric
    sinks = [rospy.Subscriber(f"/bench_node_overhead/depth/{name}", msg_type, lambda _m: None, queue_size=1,
                              buff_size=2 ** 26)
             for name, msg_type in [("image", Image), ("colored", Image), ("points", PointCloud2),
                                    ("camera_info", CameraInfo), ("info", DepthInfo)]]
    time.sleep(1.0)
    rows = []
    for run_index, (width, height) in enumerate([(320, 240), (848, 480)]):
        sim = DroneSimulator(load_sim_config({"width": width, "height": height}))
        messages = SimMessages(sim)
        pendings = []
        for index in range(frames):
            stamp = rospy.Time.from_sec(1000.0 * (run_index + 1) + index * 0.1)  # never backwards
            topic_msgs = dict(messages.frame_messages(sim.render(index), stamp, seq=index))
            node._camera_info = topic_msgs["/camera/rgb/camera_info"]
            pendings.append(_Pending(topic_msgs["/camera/rgb/image_raw"], topic_msgs["/camera/depth/image_raw"],
                                     None, rospy.Time.now()))
        for pending in pendings[:5]:  # warm-up: first publishes set up connections
            node.process(pending)
        overheads, models = [], []  # per frame, from the node's own stage timers
        for pending in pendings:
            before_model, before_overhead = node.counters.model_sum, node.counters.overhead_sum
            node.process(pending)
            overheads.append(node.counters.overhead_sum - before_overhead)
            models.append(node.counters.model_sum - before_model)
        cloud_points = [(0.0, 0.0, 1.0, 0.0)] * (width * height)
        fields = conversions._POINT_FIELDS
        start = time.perf_counter()
        point_cloud2.create_cloud(Header(), fields, cloud_points)
        naive_ms = (time.perf_counter() - start) * 1e3
        rows.append([f"{width}x{height}", f"{np.median(overheads):.1f} ms", f"{np.percentile(overheads, 90):.1f} ms",
                     f"{np.median(models):.2f} ms", f"{naive_ms:.0f} ms"])
    print(f"{frames} frames per size, {machine_line()}")
    print("\n".join(markdown_table(["resolution", "overhead median", "p90", "oracle \"model\"",
                                     "naive `point_cloud2.create_cloud` alone"], rows)))
    for sink in sinks:
        sink.unregister()
    rospy.signal_shutdown("done")


if __name__ == "__main__":
    main()
