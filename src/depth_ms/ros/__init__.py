"""Thin ROS 1 adapters: the only package that imports rospy, rosbag, cv_bridge and ROS messages."""
