"""Compare labelling runs (output folders of label_bag) in one table and one figure."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import plots
from .metrics import HIGHER_IS_BETTER, METRIC_NAMES
from .reports import LABELS, Document, read_per_frame
from .scoring import BIN_NAMES

TEMPORAL = ("tae", "flicker")


class CompareError(ValueError):
    """A run folder cannot be compared; the message names it."""


def load_run(folder: Path) -> dict:
    """summary.json of a run folder."""
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise CompareError(f"{folder}: no summary.json (not a label_bag output folder?)")
    return json.loads(path.read_text())


def _unique_names(folders: Sequence[Path], names: Optional[Sequence[str]]) -> list[str]:
    if names:
        if len(names) != len(folders):
            raise CompareError(f"{len(names)} names for {len(folders)} runs")
        return list(names)
    chosen = [Path(f).resolve().name for f in folders]
    if len(set(chosen)) < len(chosen):
        chosen = [str(Path(f)) for f in folders]
    return chosen


def comparison_rows(summaries: list[dict], names: list[str]) -> tuple[list[str], list[list]]:
    """Header and one row per run: settings, frames, every metric, temporal and per-bin AbsRel."""
    header = ["run", "model", "alignment", "scope", "frames scored", *METRIC_NAMES, *TEMPORAL, "coverage",
              *(f"abs_rel_{b}" for b in BIN_NAMES), "model_ms"]
    rows = []
    for name, summary in zip(names, summaries):
        run = summary["run"]
        applied = "+".join(summary.get("alignment_applied", {})) or run["alignment"]
        rows.append([name, run["model"] or "recorded", applied, run["scope"],
                     f"{summary['scored']}/{summary['frames']}", *(summary["metrics"][m] for m in METRIC_NAMES),
                     *(summary["temporal"][t] for t in TEMPORAL), summary["coverage"],
                     *(summary["bins"][b]["metrics"]["abs_rel"] for b in BIN_NAMES), summary["model_ms_mean"]])
    return header, rows


def best_runs(header: list[str], rows: list[list]) -> list[str]:
    """"AbsRel: run-a" lines naming the best run per metric."""
    lines = []
    for key in (*METRIC_NAMES, *TEMPORAL):
        column = header.index(key)
        values = [(row[column], row[0]) for row in rows if row[column] is not None and math.isfinite(row[column])]
        if len(values) > 1:
            best = (max if key in HIGHER_IS_BETTER else min)(v for v, _ in values)
            winners = [name for value, name in values if value == best]
            tie = " (tie)" if len(winners) > 1 else ""
            lines.append(f"{LABELS.get(key, key)}: {', '.join(winners)} ({best:.4g}){tie}")
    return lines


def _abs_rel_curve(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time, AbsRel) per scored frame; sequences are laid end to end, 1 s apart."""
    columns = read_per_frame(Path(folder) / "per_frame.csv")
    times: list[float] = []
    offset, start, current = 0.0, 0.0, None
    for sequence, stamp in zip(columns["sequence"], columns["stamp"]):
        if sequence != current:
            offset, start, current = (times[-1] + 1.0 if times else 0.0), stamp, sequence
        times.append(offset + stamp - start)
    return np.array(times), columns["abs_rel"]


def compare_runs(folders: Sequence[Path], output_dir: Path, names: Optional[Sequence[str]] = None) -> dict[str, Path]:
    """comparison.csv, comparison.md, comparison.html and comparison.png in ``output_dir``."""
    if not folders:
        raise CompareError("no runs to compare")
    summaries = [load_run(folder) for folder in folders]
    names = _unique_names(folders, names)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    header, rows = comparison_rows(summaries, names)
    csv_path = output_dir / "comparison.csv"
    with csv_path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    curves = {name: _abs_rel_curve(folder) for name, folder in zip(names, folders)}
    table = {key: [row[header.index(key)] for row in rows] for key in (*METRIC_NAMES, *TEMPORAL)}
    figure = plots.plot_comparison(names, table, curves, output_dir / "comparison.png")
    doc = Document("Depth labelling: run comparison")
    doc.paragraph(f"{len(rows)} runs: " + "; ".join(
        f"{name} = {Path(folder)} ({', '.join(s['run']['inputs'])})"
        for name, folder, s in zip(names, folders, summaries)))
    doc.heading("Metrics (mean over frames)")
    short = ["run", "model", "alignment", "frames scored", *METRIC_NAMES, *TEMPORAL, "coverage"]
    doc.table([LABELS.get(h, h) for h in short], [[row[header.index(h)] for h in short] for row in rows])
    doc.heading("AbsRel by distance")
    doc.table(["run", *BIN_NAMES], [[row[0], *(row[header.index(f"abs_rel_{b}")] for b in BIN_NAMES)]
                                     for row in rows])
    doc.heading("Best run per metric")
    doc.bullets(best_runs(header, rows) or ["(one run only)"])
    incomplete = [name for name, s in zip(names, summaries) if not s["complete"]]
    if incomplete:
        doc.paragraph(f"Incomplete runs (see their report.md): {', '.join(incomplete)}.")
    doc.heading("Plot")
    doc.image(figure.name, "run comparison")
    md_path, html_path = doc.write(output_dir, "comparison")
    return {"csv": csv_path, "md": md_path, "html": html_path, "png": figure}
