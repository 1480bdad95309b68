"""ROS-free core: numpy-only types, config, geometry, clouds, image ops and queues."""
