"""The ROS-free core logs with Python ``logging`` (logger "depth_ms"); in a node its records go to rospy, so
they reach the console and /rosout like the node's own lines (rospy forwards only its own loggers)."""
import logging

import rospy


class RospyHandler(logging.Handler):
    """Writes each record through rospy's logging call of the same level."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            rospy.logerr(message)
        elif record.levelno >= logging.WARNING:
            rospy.logwarn(message)
        elif record.levelno >= logging.INFO:
            rospy.loginfo(message)
        else:
            rospy.logdebug(message)


def forward_core_logs(level: int = logging.WARNING) -> None:
    """Send the core's records of ``level`` and above to rospy (once per process), instead of stderr."""
    logger = logging.getLogger("depth_ms")
    if not any(isinstance(h, RospyHandler) for h in logger.handlers):
        logger.addHandler(RospyHandler())
    logger.setLevel(level)
    logger.propagate = False
