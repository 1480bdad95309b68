"""sim_record: write simulator flights straight into a rosbag (no roscore needed).

    rosrun depth_ms sim_record --frames 100 --output flight.bag [--config my_sim.yaml] [--set width=640]

The bag holds the PX4 SITL topics of :mod:`depth_ms.ros.sim_messages` plus ``/tf`` and ``/tf_static``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import rosbag
import rospy
from tqdm import tqdm

from depth_ms.core.config import ConfigError, load_yaml, merge_dicts, parse_overrides
from depth_ms.sim import DroneSimulator, load_sim_config

from . import sim_messages


def write_sim_bag(simulator: DroneSimulator, output: str | Path, frames: int, start_time: float = 1.0e9,
                  first_index: int = 0, progress: bool = False) -> Path:
    """Render ``frames`` frames and write them to ``output``; stamps start at ``start_time`` seconds."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    messages = sim_messages.SimMessages(simulator)
    with rosbag.Bag(str(output), "w") as bag:
        start = rospy.Time.from_sec(start_time)
        bag.write(sim_messages.TF_STATIC_TOPIC, messages.static_transforms(start), start)
        for offset in tqdm(range(frames), desc="render", unit="frame", disable=not progress):
            index = first_index + offset
            frame = simulator.render(index)
            stamp = rospy.Time.from_sec(start_time + frame.stamp)
            for topic, msg in messages.frame_messages(frame, stamp, seq=index):
                bag.write(topic, msg, stamp)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the embedded drone simulator into a rosbag.")
    parser.add_argument("--output", "-o", required=True, help="bag file to write")
    parser.add_argument("--frames", "-n", type=int, default=100, help="number of frames (default 100)")
    parser.add_argument("--config", help="sim YAML (default: config/sim.yaml defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set width=640 --set world.buildings=5")
    parser.add_argument("--start-time", type=float, default=1.0e9, help="stamp of the first frame, seconds")
    args = parser.parse_args(rospy.myargv(argv if argv is not None else sys.argv)[1:])
    try:
        base = load_yaml(args.config) if args.config else {}
        config = load_sim_config(merge_dicts(base, parse_overrides(args.set)))
    except ConfigError as exc:
        print(f"sim_record: {exc}", file=sys.stderr)
        return 2
    if args.frames < 1:
        print("sim_record: --frames must be >= 1", file=sys.stderr)
        return 2
    path = write_sim_bag(DroneSimulator(config), args.output, args.frames, args.start_time, progress=True)
    print(f"sim_record: wrote {args.frames} frames ({config.width}x{config.height}) to {path}")
    return 0
