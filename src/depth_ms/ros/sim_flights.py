"""sim_flights: render a flight plan's flights into bags, one per flight (no roscore needed).

    rosrun depth_ms sim_flights config/training/flights.yaml -o data/flights [--split train] [--jobs 2]

Writes ``<output>/<split>/<split>_NNN.bag`` with the simulator's PX4 SITL topics. The plan fixes every
flight, so the same command always writes the same frames; bags already complete are kept, so an
interrupted run continues where it stopped. Each bag is written under a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import rospy
from tqdm import tqdm

from depth_ms.core.config import ConfigError
from depth_ms.sim import DroneSimulator
from depth_ms.training.flights import Flight, load_flight_plan, plan_flights

from .sim_bag import write_sim_bag


def _write(job: tuple[Flight, str]) -> str:
    flight, path = job
    temporary = f"{path}.tmp"
    write_sim_bag(DroneSimulator(flight.config), temporary, flight.frames)
    os.replace(temporary, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the flights of a flight plan into rosbags.")
    parser.add_argument("plan", help="flight plan YAML (config/training/flights.yaml)")
    parser.add_argument("--output", "-o", required=True, help="folder; bags go to <output>/<split>/")
    parser.add_argument("--split", action="append", default=[], help="only this split (repeatable)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="render processes")
    args = parser.parse_args(rospy.myargv(argv if argv is not None else sys.argv)[1:])
    try:
        plan = load_flight_plan(args.plan)
        splits = args.split or list(plan.splits)
        flights = [f for split in splits for f in plan_flights(plan, split)]
    except ConfigError as exc:
        print(f"sim_flights: {exc}", file=sys.stderr)
        return 2
    jobs = []
    for flight in flights:
        folder = Path(args.output) / flight.split
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{flight.name}.bag"
        if not path.is_file():
            jobs.append((flight, str(path)))
    frames = sum(f.frames for f, _ in jobs)
    print(f"sim_flights: {len(flights)} flights in {', '.join(splits)}; {len(jobs)} to render ({frames} frames), "
          f"{len(flights) - len(jobs)} already there")
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        for _ in tqdm(pool.map(_write, jobs), total=len(jobs), desc="flights", unit="bag"):
            pass
    print(f"sim_flights: done, bags in {args.output}")
    return 0
