"""Training of the package's own models on simulator flights (ROS-free; the CLI lives in depth_ms.ros)."""
