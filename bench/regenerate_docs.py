#!/usr/bin/env python3
"""Regenerates the measured tables of the docs from the benchmarks that produce them.

Every block of a page in docs/ (or README.md) written as

    <!-- measured: python bench/NAME.py ARGS -->
    ...
    <!-- /measured -->

is replaced by what that command prints now: its last Markdown table, under a line naming the command and
the date and machine the benchmark reports. Commands run one after another from the repository root (each
wants the whole machine); a page is rewritten after each block, and a failed command keeps its old block.

    source scripts/env.sh && python bench/regenerate_docs.py [--only TEXT] [--list]
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- measured: (?P<command>python [^\n]+?) -->\n(?P<body>.*?)<!-- /measured -->", re.DOTALL)


def pages(root: Path) -> list[Path]:
    return sorted((root / "docs").glob("*.md")) + [root / "README.md"]


def last_table(output: str) -> tuple[str, list[str]]:
    """The last non-empty line above the last Markdown table of ``output`` (the bench's machine line) and the
    table's lines."""
    lines = output.splitlines()
    end = max((i for i, line in enumerate(lines) if line.startswith("|")), default=None)
    if end is None:
        raise ValueError("the command printed no Markdown table")
    start = end
    while start > 0 and lines[start - 1].startswith("|"):
        start -= 1
    above = [line.strip() for line in lines[:start] if line.strip()]
    return (above[-1].rstrip(":") if above else ""), lines[start:end + 1]


def block_text(command: str, machine: str, table: list[str], seconds: float) -> str:
    return f"`{command}` ({machine}; {seconds:.0f} s):\n\n" + "\n".join(table) + "\n"


def regenerate(page: Path, only: str, root: Path = ROOT) -> list[str]:
    """Runs the page's blocks (those whose command contains ``only``); returns one report line per block."""
    reports = []
    for match in list(BLOCK.finditer(page.read_text())):
        command = match["command"]
        if only not in command:
            continue
        start = time.monotonic()
        run = subprocess.run(shlex.split(command), cwd=root, capture_output=True, text=True)
        try:
            if run.returncode != 0:
                raise ValueError(f"exit {run.returncode}: {run.stderr.strip().splitlines()[-1:]}")
            machine, table = last_table(run.stdout)
        except ValueError as exc:
            reports.append(f"{page.name}: {command}: kept the old table ({exc})")
            continue
        text = page.read_text()  # re-read: earlier blocks of this page changed it
        old = f"<!-- measured: {command} -->\n{match['body']}<!-- /measured -->"
        new = f"<!-- measured: {command} -->\n{block_text(command, machine, table, time.monotonic() - start)}" \
              "<!-- /measured -->"
        page.write_text(text.replace(old, new, 1))
        reports.append(f"{page.name}: {command}: {len(table) - 2} rows")
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="run only the blocks whose command contains this text")
    parser.add_argument("--list", action="store_true", help="list the blocks and exit")
    args = parser.parse_args()
    if args.list:
        for page in pages(ROOT):
            for match in BLOCK.finditer(page.read_text()):
                print(f"{page.relative_to(ROOT)}: {match['command']}")
        return 0
    failed = False
    for page in pages(ROOT):
        for line in regenerate(page, args.only):
            print(line, flush=True)
            failed |= "kept the old table" in line
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
