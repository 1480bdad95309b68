#!/usr/bin/env python3
"""Soak: a live graph fed at 30 Hz for an hour, per model; prints a table and writes a plot.

A 640x480 simulator bag recorded at 30 Hz is replayed in a loop with ``rosbag play -l`` (so rendering does not
share the CPU with the model) into ``depth_node`` on the shipped weights; the script samples the node's RSS
every few seconds and reads every ``depth/info``: frames in / processed / dropped / failed, latency p50 / p99
/ max, RSS at 5 minutes and at the end. Targets: no failed frame, RSS growth after the first 5 minutes at
most 2 %, p99 latency at most twice the median model time plus one input period.

    source scripts/env.sh && python bench/soak.py [--models midas marigold] [--minutes 60] [-o runs/soak]

Each model's measurements go to ``OUTPUT/<model>.json`` as soon as its run ends; ``--table`` only rebuilds
the table and the plot of ``--models`` from those files (runs of one model at a time, combined).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tables import machine_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]
RATE_HZ = 30.0
WARM_UP_MINUTES = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def node_pid(launch: subprocess.Popen) -> int:
    """The depth_node child of a roslaunch process."""
    for _ in range(100):
        out = subprocess.run(["pgrep", "-P", str(launch.pid), "-f", "depth_node"], capture_output=True, text=True)
        if out.stdout.split():
            return int(out.stdout.split()[0])
        time.sleep(0.2)
    raise RuntimeError("depth_node did not start")


def record_bag(path: Path) -> None:
    if not path.exists():
        subprocess.run(["rosrun", "depth_ms", "sim_record", "--frames", "300", "--output", str(path),
                        "--set", "width=640", "--set", "height=480", "--set", f"rate_hz={RATE_HZ}"], check=True)


def soak(model: str, bag: Path, minutes: float, output: Path) -> dict:
    """One model for ``minutes``; returns the measurements."""
    import rospy
    from depth_ms.msg import DepthInfo

    infos: list[tuple[float, DepthInfo]] = []
    subscriber = rospy.Subscriber("/depth_node/depth/info", DepthInfo,
                                  lambda msg: infos.append((time.monotonic(), msg)), queue_size=100)
    log = open(output / f"{model}.log", "w")
    launch = subprocess.Popen(["roslaunch", "depth_ms", "drone_depth.launch", f"model:={model}", "sim:=false",
                               "scale:=none", "warm_up:=[640, 480]"], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    pid = node_pid(launch)
    while not any("warm-up (compile)" in line for line in open(output / f"{model}.log")):
        if launch.poll() is not None:
            tail = "".join(open(output / f"{model}.log").readlines()[-5:])
            raise RuntimeError(f"the {model} launch ended before its warm-up:\n{tail}")
        time.sleep(1.0)
    player = subprocess.Popen(["rosbag", "play", "-q", "-l", str(bag)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
    start, samples = time.monotonic(), []
    while time.monotonic() - start < minutes * 60:
        samples.append((time.monotonic() - start, rss_mb(pid)))
        time.sleep(5.0)
    os.killpg(player.pid, signal.SIGINT)
    player.wait()
    time.sleep(2.0)
    os.killpg(launch.pid, signal.SIGINT)
    launch.wait(timeout=30)
    subscriber.unregister()
    log.close()

    times = np.array([t - start for t, _ in infos])
    last = infos[-1][1]
    latency = np.array([i.latency_ms for _, i in infos])
    model_ms = np.array([i.model_latency_ms for _, i in infos])
    rss_t, rss = (np.array(v) for v in zip(*samples))
    after_warm_up = rss[rss_t >= min(WARM_UP_MINUTES * 60, rss_t[-1])][0]
    return dict(model=model, minutes=minutes, frames_in=last.frames_in, processed=last.frames_out,
                dropped=last.frames_dropped, failed=last.frames_failed, rejected=last.frames_rejected,
                resets=last.resets, p50=float(np.percentile(latency, 50)), p99=float(np.percentile(latency, 99)),
                max=float(latency.max()), model_median=float(np.median(model_ms)), rss_5min=float(after_warm_up),
                rss_end=float(rss[-1]), growth=float((rss[-1] - after_warm_up) / after_warm_up * 100),
                series=(times, latency, rss_t, rss))


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for r in results:
        times, latency, rss_t, rss = r["series"]
        top.plot(times / 60, latency, ".", markersize=1, label=r["model"])
        bottom.plot(rss_t / 60, rss, label=r["model"])
    top.set_ylabel("latency ms")
    top.set_yscale("log")
    bottom.set_ylabel("node RSS MB")
    bottom.set_xlabel("minutes")
    top.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["midas", "marigold"])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("-o", "--output", default=str(ROOT / "runs/soak"))
    parser.add_argument("--table", action="store_true", help="only the table and plot from the models' JSON files")
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.table:
        return report(args.models, output)
    bag = output / "soak_640x480_30hz.bag"
    record_bag(bag)

    port = free_port()
    os.environ["ROS_MASTER_URI"] = f"http://127.0.0.1:{port}"
    roscore = subprocess.Popen(["roscore", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        import rosgraph
        while not rosgraph.is_master_online():
            time.sleep(0.2)
        import rospy
        rospy.init_node("soak", anonymous=True, disable_signals=True)
        for model in args.models:
            result = soak(model, bag, args.minutes, output)
            result["series"] = [series.tolist() for series in result["series"]]
            result["measured"] = machine_line()
            (output / f"{model}.json").write_text(json.dumps(result))
    finally:
        os.killpg(roscore.pid, signal.SIGINT)
        roscore.wait(timeout=20)
    return report(args.models, output)


def report(models: list[str], output: Path) -> int:
    """The table and plot of ``models`` from their JSON files in ``output``."""
    results = [json.loads((output / f"{model}.json").read_text()) for model in models]
    for r in results:
        r["series"] = [np.array(series) for series in r["series"]]
    plot(results, output / "soak.png")

    period_ms = 1e3 / RATE_HZ
    header = ["model", "minutes", "in", "processed", "dropped", "failed", "resets", "latency p50 ms", "p99 ms",
              "max ms", "p99 target ms", "RSS 5 min MB", "RSS end MB", "growth %"]
    rows = [[r["model"], f"{r['minutes']:g}", r["frames_in"], r["processed"], r["dropped"], r["failed"],
             r["resets"], f"{r['p50']:.0f}", f"{r['p99']:.0f}", f"{r['max']:.0f}",
             f"{2 * r['model_median'] + period_ms:.0f}", f"{r['rss_5min']:.0f}", f"{r['rss_end']:.0f}",
             f"{r['growth']:+.2f}"] for r in results]
    measured = "; ".join(sorted({r["measured"] for r in results}))
    lines = [f"soak at {RATE_HZ:g} Hz (640x480 bag, rosbag play -l), {measured}", *markdown_table(header, rows)]
    (output / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\nplot: {output / 'soak.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
