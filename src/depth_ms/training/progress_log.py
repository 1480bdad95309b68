"""The run's CSV log (one row per logged step) and its plot of loss and validation AbsRel / delta1."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

COLUMNS = ("step", "lr", "loss", "images_per_s", "val_abs_rel", "val_delta1")


def read_log(path: Path) -> list[dict]:
    """The rows of a ``log.csv`` as dicts of strings (empty where a column was not logged at that step)."""
    with Path(path).open(newline="") as stream:
        return list(csv.DictReader(stream))


class ProgressLog:
    """Appends rows to ``log.csv``; on resume, rows after the resumed step are dropped first."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        rows = self.read() if resume_step is not None and self.path.is_file() else []
        rows = [r for r in rows if int(r["step"]) <= (resume_step or 0)]
        with self.path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def add(self, **values) -> None:
        with self.path.open("a", newline="") as stream:
            csv.DictWriter(stream, COLUMNS).writerow({k: values.get(k, "") for k in COLUMNS})

    def read(self) -> list[dict]:
        return read_log(self.path)

    def plot(self, path: Path) -> None:
        """Loss (log scale) and validation AbsRel / delta1 against the step, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read()

        def series(key):
            points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in ("", None)]
            return [p for p in points if math.isfinite(p[1])]

        figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        loss = series("loss")
        if loss:
            steps, values = (np.array(v) for v in zip(*loss))
            top.plot(steps, values, lw=0.6, alpha=0.4, label="training loss (logged steps)")
            window = min(len(values), 15)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")  # moving mean
            top.plot(steps[window - 1:], smooth, lw=1.5, color="C0", label=f"mean of {window} logged steps")
            top.set_yscale("log")
        top.set_ylabel("loss")
        top.legend(loc="upper right")
        for key, label, axis, color in (("val_abs_rel", "AbsRel", bottom, "C1"),
                                        ("val_delta1", "delta1", bottom.twinx(), "C2")):
            points = series(key)
            if points:
                axis.plot(*zip(*points), marker="o", color=color)
            axis.set_ylabel(f"validation {label}", color=color)
        bottom.set_xlabel("step")
        figure.suptitle("training: loss and validation metrics (per-frame alignment in disparity)")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)


__all__ = ["ProgressLog", "COLUMNS"]
