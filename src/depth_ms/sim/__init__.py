"""ROS-free embedded drone simulator: procedural world, flight path, ray-cast RGB and metric depth."""
from .config import SimConfig, load_sim_config
from .simulator import DroneSimulator, SimFrame

__all__ = ["DroneSimulator", "SimConfig", "SimFrame", "load_sim_config"]
