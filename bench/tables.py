"""Markdown tables and the machine line the benchmarks print (imported by the scripts beside it)."""
from __future__ import annotations

import os
import platform
import time


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """Lines of a Markdown table whose columns are padded to their widest cell."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return ["| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + " |"
            for row in [header, ["-" * w for w in widths], *rows]]


def machine_line() -> str:
    """Date, CPU and core count, for the line above a table."""
    return f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
