#!/usr/bin/env python3
"""Two builds of the native kernels side by side in one run: MiDaS small and the streaming Marigold frame.

Each row runs in its own process with ``DEPTH_MS_NATIVE_LIBRARY`` set to one build, the builds alternating
over ``--rounds`` so that drift of the machine hits both alike: MiDaS small on random weights in graph mode
(``bench_midas_small.py --modes graph``, median of 30 calls) and the shipped Marigold-family model's streaming
frame at 320x240 (``bench_marigold.py --shipped``, ``ours_warm1``: warm, 1 step, median of frames 2-12).
``--before`` is a built library or a git revision: a revision with ``native/`` is built with its CMake
project, an older one (kernels in a Python string in ``native_kernels.py``) with its own compiler flags.
``--after`` defaults to the sourced workspace's library.

    source scripts/env.sh && python bench/bench_native_build.py --before 65c6d14
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tables import machine_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from depth_ms.models.native_library import ISA_FILE, LIBRARY, native_library  # noqa: E402


def build_revision(revision: str, into: Path) -> Path:
    """The native library of git ``revision``, built into ``into``."""
    tree = into / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    out = into / "lib"
    out.mkdir()
    if (tree / "native" / "CMakeLists.txt").exists():
        subprocess.run(["cmake", "-S", str(tree / "native"), "-B", str(into / "build"),
                        f"-DDEPTH_MS_NATIVE_OUTPUT_DIR={out}"], check=True, capture_output=True)
        subprocess.run(["cmake", "--build", str(into / "build")], check=True, capture_output=True)
    else:  # the kernels as a string in the module, compiled with the module's own flags
        namespace: dict = {}
        source = (tree / "src/depth_ms/models/native_kernels.py").read_text()
        exec(compile(source.split("\ndef ")[0].replace("from mindspore import ops", ""), "old", "exec"), namespace)
        (into / "kernels.cc").write_text(namespace["_NATIVE_SOURCE"])
        subprocess.run(["g++", *namespace["_CXX_FLAGS"], "-o", str(out / LIBRARY), str(into / "kernels.cc")],
                       check=True)
        shutil.copy(Path(native_library()).parent / ISA_FILE, out / ISA_FILE)  # same machine, same extensions
    return out / LIBRARY


def midas_small_ms(library: str) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "bench/bench_midas_small.py"), "--modes", "graph", "--sizes",
                          "256x256", "--repeats", "30"], capture_output=True, text=True, check=True,
                         env={**os.environ, "DEPTH_MS_NATIVE_LIBRARY": library})
    return json.loads(out.stdout.strip().splitlines()[-1])[0]["median_ms"]


def marigold_frame_ms(library: str, scratch: Path) -> float:
    result = scratch / "marigold.json"
    subprocess.run([sys.executable, str(ROOT / "bench/bench_marigold.py"), "--shipped", "--sizes", "320x240",
                    "--frames", "12", "--configs", "ours_warm1", "--json", str(result)], capture_output=True,
                   text=True, check=True, env={**os.environ, "DEPTH_MS_NATIVE_LIBRARY": library})
    return json.loads(result.read_text())[0]["median_s"] * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="a libdepth_ms_kernels.so or a git revision")
    parser.add_argument("--after", default="", help="a libdepth_ms_kernels.so (default: the workspace's)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="native_build_"))
    before = args.before if args.before.endswith(".so") else str(build_revision(args.before, scratch / "before"))
    builds = {f"before ({args.before})": before, "after": args.after or native_library()}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, library in builds.items():
            times.setdefault((name, "MiDaS small 256x256, graph"), []).append(midas_small_ms(library))
            times.setdefault((name, "Marigold streaming frame 320x240"), []).append(marigold_frame_ms(library, scratch))
    header = ["build", "workload", "median ms per round", "mean ms"]
    rows = [[name, workload, " / ".join(f"{t:.1f}" for t in values), f"{np.mean(values):.1f}"]
            for (name, workload), values in sorted(times.items(), key=lambda item: item[0][1])]
    print("\n".join([machine_line(), *markdown_table(header, rows)]))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
