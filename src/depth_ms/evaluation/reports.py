"""Outputs a person reads: per_frame.csv (streamed), summary.json, report.md and report.html with plots.

The Markdown and HTML pages are rendered from the same list of blocks, so they say the same thing.
"""
from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from . import plots
from .metrics import METRIC_NAMES, TERM_NAMES, metrics_from_sums
from .records import FrameRecord, Skip
from .scoring import BIN_NAMES, ScoredFrame

BIN_COLUMNS = ("abs_rel", "rmse", "delta1")
CSV_COLUMNS = ("sequence", "index", "stamp", "status", "detail", "model", "space", "scale", "shift",
               "valid_gt_pixels", "coverage", *METRIC_NAMES, "tae", "flicker", "static_share",
               *(f"{m}_{b}" for b in BIN_NAMES for m in BIN_COLUMNS), *(f"pixels_{b}" for b in BIN_NAMES),
               "model_ms", "resized_from")
HEADLINE = ("abs_rel", "delta1", "rmse", "silog", "tae", "flicker")
LABELS = {"abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE (m)", "rmse_log": "RMSE log", "log10": "log10",
          "delta1": "δ1", "delta2": "δ2", "delta3": "δ3", "i_rmse": "iRMSE (1/m)", "silog": "SILog",
          "tae": "TAE (%)", "flicker": "flicker (%)", "coverage": "coverage"}

DEFINITIONS = [
    "Valid pixels: finite ground truth with min_depth < gt < max_depth, outside the crop margins, where the "
    "prediction is finite (the share of valid GT pixels with a prediction is `coverage`).",
    "Alignment (Marigold's protocol): `none` uses the prediction as metres (or its own DepthInfo scale/shift); "
    "`depth` fits gt ≈ s·p + t by least squares; `disparity` fits 1/gt ≈ s·p + t (pixels with p > 0), clips the "
    "aligned disparity at 1e-3 and inverts it. `auto` picks none / depth / disparity from the DepthKind "
    "(metric / affine depth / affine disparity). Scope `frame` fits every frame, `sequence` one fit per bag. "
    "Aligned depth is then clipped to [min_depth, max_depth].",
    "Per-frame metrics over valid pixels, then averaged over frames: AbsRel = mean |p−g|/g; SqRel = mean (p−g)²/g; "
    "RMSE = √mean (p−g)²; RMSE log = √mean (ln p − ln g)²; log10 = mean |log10 p − log10 g|; "
    "δk = share of max(p/g, g/p) < 1.25^k; iRMSE = √mean (1/p − 1/g)².",
    "SILog = 100·√(mean(d²) − mean(d)²), d = ln p − ln g (Marigold's `silog_rmse`, the KITTI-benchmark form; "
    "not the 0.85-weighted training loss of BTS/AdaBins).",
    "TAE (Video Depth Anything's `eval_tae.py`): frame t's aligned prediction is back-projected with the "
    "intrinsics, moved into frame t+1 with the recorded poses, rounded to pixels, and compared (AbsRel) with "
    "frame t+1's prediction where its ground truth is valid; averaged with the reverse direction, ×100. "
    "Even the ground truth has a TAE above 0 (pixel rounding, occlusions): compare runs on the same bag.",
    "TAE and flicker always compare predictions under one alignment per sequence (as `eval_tae.py` aligns a "
    "whole sequence once in disparity), whatever the scope of the other metrics: a per-frame fit would hide "
    "the frame-to-frame scale drift they measure.",
    "Flicker: mean |(p_t − p_{t−1}) − (g_t − g_{t−1})| / g_t over pixels whose ground truth changes by less "
    "than `temporal.static_threshold` between the two frames, ×100 (0 for the ground truth itself).",
    "Distance bins: near / mid / far by ground-truth depth (edges `scoring.distance_bins`); per-bin metrics "
    "are averaged over the frames that have pixels in the bin.",
]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class PerFrameCsv:
    """Streams one row per record (scored or skipped) to per_frame.csv, flushed as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = self.path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
        self._writer.writeheader()

    def add(self, scored: ScoredFrame) -> None:
        record = scored.record
        row = {"sequence": record.sequence, "index": record.index, "stamp": f"{record.stamp:.6f}",
               "status": "scored", "model": record.model, "space": scored.space, "scale": scored.scale,
               "shift": scored.shift, "valid_gt_pixels": scored.n_valid_gt, "coverage": scored.coverage,
               **scored.metrics, "tae": scored.tae, "flicker": scored.flicker, "static_share": scored.static_share,
               "model_ms": record.model_ms,
               "resized_from": "" if scored.resized_from is None else "x".join(map(str, scored.resized_from))}
        for name, sums in zip(BIN_NAMES, scored.bin_sums):
            values = metrics_from_sums(sums)
            row.update({f"{m}_{name}": values[m] for m in BIN_COLUMNS})
            row[f"pixels_{name}"] = int(sums[TERM_NAMES.index("count")])
        self._write(row)

    def add_skipped(self, record: FrameRecord, skip: Skip) -> None:
        self._write({"sequence": record.sequence, "index": record.index, "stamp": f"{record.stamp:.6f}",
                     "status": skip.reason, "detail": skip.detail, "model": record.model,
                     "model_ms": record.model_ms})

    def _write(self, row: dict) -> None:
        self._writer.writerow({key: _cell(value) for key, value in row.items()})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_per_frame(path: Path, scored_only: bool = True) -> dict[str, np.ndarray]:
    """per_frame.csv as columns: numbers as float arrays (NaN for empty), text as object arrays."""
    with Path(path).open(newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if not scored_only or row["status"] == "scored"]
    text = {"sequence", "status", "detail", "model", "space", "resized_from"}
    columns = {}
    for name in CSV_COLUMNS:
        values = [row.get(name, "") for row in rows]
        columns[name] = np.array(values, dtype=object) if name in text else \
            np.array([float(v) if v not in ("", None) else np.nan for v in values], dtype=float)
    return columns


# ---------------------------------------------------------------------- documents
class Document:
    """Ordered blocks rendered to Markdown and HTML."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[tuple] = []

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence]) -> None:
        self.blocks.append(("table", list(header), [[_fmt(v) for v in row] for row in rows]))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                out += [f"## {block[1]}", ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "table":
                out.append("| " + " | ".join(block[1]) + " |")
                out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(block[1]))) + "|")
                out += ["| " + " | ".join(row) + " |" for row in block[2]] + [""]
            elif kind == "img":
                out += [f"![{block[2]}]({block[1]})", ""]
            elif kind == "code":
                out += ["```", block[1].rstrip(), "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        esc = html.escape
        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{esc(self.title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
               "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
               "pre{background:#f4f4f4;padding:0.5em;overflow-x:auto}code{background:#f4f4f4}</style>",
               "</head><body>", f"<h1>{esc(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                out.append(f"<h2>{esc(block[1])}</h2>")
            elif kind == "p":
                out.append(f"<p>{_inline_code(esc(block[1]))}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline_code(esc(i))}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
                body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block[2])
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            elif kind == "img":
                out.append(f"<p><img src='{esc(block[1])}' alt='{esc(block[2])}'></p>")
            elif kind == "code":
                out.append(f"<pre>{esc(block[1])}</pre>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        md_path, html_path = Path(folder) / f"{stem}.md", Path(folder) / f"{stem}.html"
        md_path.write_text(self.markdown() + "\n")
        html_path.write_text(self.html() + "\n")
        return md_path, html_path


def _inline_code(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


# ---------------------------------------------------------------------- the labelling report
def write_summary(folder: Path, summary: dict) -> Path:
    path = Path(folder) / "summary.json"
    path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return path


def write_reports(folder: Path, summary: dict, samples: list, error_range: float) -> dict[str, Path]:
    """summary.json, plots/*.png, report.md and report.html in ``folder``; returns their paths."""
    folder = Path(folder)
    paths = {"summary": write_summary(folder, summary)}
    figures = _write_plots(folder, summary, samples, error_range)
    document = _labelling_document(summary, figures)
    paths["report_md"], paths["report_html"] = document.write(folder, "report")
    paths.update(figures)
    return paths


def _write_plots(folder: Path, summary: dict, samples: list, error_range: float) -> dict[str, Path]:
    figures: dict[str, Path] = {}
    if summary["scored"] == 0:
        return figures
    plot_dir = folder / "plots"
    columns = read_per_frame(folder / "per_frame.csv")
    figures["metrics_over_time"] = plots.plot_metrics_over_time(columns, plot_dir / "metrics_over_time.png")
    figures["error_histogram"] = plots.plot_error_histogram(summary["histograms"]["signed_rel_error"],
                                                            plot_dir / "error_histogram.png")
    ranges = [summary["bins"][name]["range_m"] for name in BIN_NAMES]
    figures["error_vs_distance"] = plots.plot_error_vs_distance(summary["histograms"]["error_vs_distance"], ranges,
                                                                plot_dir / "error_vs_distance.png")
    sample_path = plots.plot_samples(samples, plot_dir / "samples.png", error_range)
    if sample_path is not None:
        figures["samples"] = sample_path
    return figures


def _labelling_document(summary: dict, figures: dict[str, Path]) -> Document:
    run = summary["run"]
    doc = Document(f"Depth labelling report: {run['model'] or 'recorded predictions'}")
    status = "complete" if summary["complete"] else "INCOMPLETE (see Problems)"
    doc.paragraph(f"{status}. {summary['scored']} of {summary['frames']} frames scored from "
                  f"{len(run['inputs'])} bag(s): {', '.join(run['inputs'])}. Mode: {run['mode']}. "
                  f"Alignment: {run['alignment']} -> {_applied(summary)} (scope {run['scope']}). "
                  f"Created {run['created']}.")
    doc.heading("Summary")
    headline = [summary["metrics"].get(k) if k in summary["metrics"] else summary["temporal"].get(k)
                for k in HEADLINE]
    doc.table([LABELS[k] for k in HEADLINE] + ["coverage", "frames scored"],
              [headline + [summary["coverage"], summary["scored"]]])
    problems = list(summary["notes"])
    for reason, count in summary["skipped"].items():
        problems.append(f"{count} frame(s) not scored: `{reason}`, e.g. {summary['skip_examples'].get(reason, '')}")
    for key, count in summary.get("pairing", {}).items():
        if count:
            problems.append(f"pairing: {key} = {count}")
    doc.heading("Problems and unmatched messages")
    if problems:
        doc.bullets(problems)
    else:
        doc.paragraph("None: every frame was paired and scored.")
    doc.heading("Metrics (mean over frames)")
    rows = [["all", *(summary["metrics"][m] for m in METRIC_NAMES), summary["scored"]]]
    rows += [[name, *(seq["metrics"][m] for m in METRIC_NAMES), seq["scored"]]
             for name, seq in summary["sequences"].items()]
    doc.table(["sequence", *(LABELS[m] for m in METRIC_NAMES), "frames"], rows)
    doc.heading("By distance")
    doc.table(["bin", "range (m)", "pixels", "frames", *(LABELS[m] for m in ("abs_rel", "rmse", "delta1", "silog"))],
              [[name, "{:g} – {:g}".format(*b["range_m"]), b["pixels"], b["frames"],
                *(b["metrics"][m] for m in ("abs_rel", "rmse", "delta1", "silog"))]
               for name, b in summary["bins"].items()])
    doc.heading("Temporal")
    temporal = summary["temporal"]
    doc.table(["TAE (%)", "pairs", "flicker (%)", "pairs", "static share"],
              [[temporal["tae"], temporal["tae_pairs"], temporal["flicker"], temporal["flicker_pairs"],
                temporal["static_share"]]])
    if temporal["tae_pairs"] == 0:
        doc.paragraph("TAE needs consecutive scored frames with poses and camera intrinsics; none were available.")
    if figures:
        doc.heading("Plots")
        for key, alt in (("metrics_over_time", "metrics over time"), ("error_histogram", "error histogram"),
                         ("error_vs_distance", "error vs distance"), ("samples", "sample frames")):
            if key in figures:
                doc.image(f"plots/{Path(figures[key]).name}", alt)
    doc.heading("Timing")
    timing = summary["timing"]
    doc.paragraph(f"Wall time {timing['wall_s']:.1f} s; scoring alone {_fmt(timing['scoring_fps'])} frames/s; "
                  f"model {_fmt(summary['model_ms_mean'])} ms/frame (mean).")
    doc.heading("Definitions")
    doc.bullets(DEFINITIONS)
    doc.heading("Settings")
    doc.code(yaml.safe_dump(summary["config"], sort_keys=False))
    return doc


def _applied(summary: dict) -> str:
    """"depth (12 frames)" style list of the alignments actually applied."""
    applied = summary.get("alignment_applied", {})
    return ", ".join(f"{name} ({count} frames)" for name, count in applied.items()) or "none applied"


def first_line(summary: dict) -> str:
    """A one-line result for terminals and logs."""
    m, t = summary["metrics"], summary["temporal"]
    return (f"{summary['scored']}/{summary['frames']} frames scored: AbsRel {_fmt(m['abs_rel'])}, "
            f"delta1 {_fmt(m['delta1'])}, RMSE {_fmt(m['rmse'])} m, SILog {_fmt(m['silog'])}, "
            f"TAE {_fmt(t['tae'])} %, flicker {_fmt(t['flicker'])} %")
