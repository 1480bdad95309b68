"""depth_ms: monocular depth for drones on ROS 1 with MindSpore.

Kept empty on purpose: catkin's relay executes this file on every ``import depth_ms.msg``.
"""
