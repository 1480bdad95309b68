"""Read a node's private parameters into a strict config dataclass."""
from __future__ import annotations

import sys
from typing import Type, TypeVar

import rospy

from depth_ms.core.config import ConfigError, from_dict

T = TypeVar("T")


def private_params_as(cls: Type[T], ignore: tuple[str, ...] = ()) -> T:
    """All ``~`` params as ``cls``; an unknown or mistyped param stops the node with its name logged."""
    params = rospy.get_param("~", {})
    params = {key: value for key, value in params.items() if key not in ignore}
    try:
        return from_dict(cls, params)
    except ConfigError as exc:
        rospy.logfatal(f"{rospy.get_name()}: bad parameter: {exc}")
        sys.exit(2)
