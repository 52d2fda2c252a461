"""The speedup table (docs/design.md §4) as CSV (every column), Markdown and LaTeX (booktabs).

Rows come from :func:`metapinn.stats.speedup_table`: one per family × split × method.
A median speedup is marked "≥" when some of its per-task ratios are lower bounds (scratch
never reached the thresholds there, so its steps are censored at the budget), "≤" when some
are upper bounds (the method never reached them), "~" when both occur; "–" where neither
reached them on any task. Its 95 % interval is shown from 8 tasks on; with fewer, each
task's median speedup over seeds is listed instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .ncio import atomic_write

HEADER = ("family", "split", "method", "tasks × seeds", "speedup [95 % CI] or (per task)",
          "first-hit speedup", "wall-clock speedup", "reached", "at init", "diverged",
          "steps", "time (s)", "u err @10 %", "u err final", "coef err @0",
          "coef err final", "break-even tasks")


BOUND_MARKS = {"exact": "", "lower": "≥", "upper": "≤", "mixed": "~"}


def _fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if np.isinf(x):
        return "∞"
    return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.{digits}f}"


def table_rows(df: pd.DataFrame) -> list[list[str]]:
    """The formatted cells of the Markdown/LaTeX tables, one list per row of ``df``."""
    rows = []
    for r in df.itertuples():
        if np.isnan(r.speedup):
            ci = "–"
        else:
            ci = BOUND_MARKS.get(r.speedup_bound, "") + _fmt(r.speedup)
            if np.isfinite(r.speedup_lo):
                ci += f" [{_fmt(r.speedup_lo)}, {_fmt(r.speedup_hi)}]"
            elif isinstance(r.per_task, str) and r.per_task:
                ci += f" ({r.per_task})"
        be = (f"{r.break_even_tasks:.0f}" if np.isfinite(r.break_even_tasks)
              else _fmt(r.break_even_tasks))
        rows.append([r.pde, r.split, r.method, f"{r.n_tasks} × {r.n_seeds}", ci,
                     _fmt(r.first_hit_speedup), _fmt(r.wall_speedup),
                     "–" if np.isnan(r.reached) else f"{r.reached:.0%}",
                     str(r.n_at_init), str(r.n_diverged),
                     "–" if np.isnan(r.steps_to_threshold) else f"{r.steps_to_threshold:.0f}",
                     _fmt(r.time_to_threshold_s), f"{r.u_rel_l2_at_10pct:.2e}",
                     f"{r.u_rel_l2_final:.2e}", f"{r.coef_rel_err_init:.2e}",
                     f"{r.coef_rel_err_final:.2e}", be])
    return rows


def markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(df)]
    return "\n".join(lines) + "\n"


def latex(df: pd.DataFrame) -> str:
    def tex(cell: str) -> str:
        return (cell.replace("%", "\\%").replace("∞", "$\\infty$").replace("–", "--")
                .replace("≥", "$\\geq$").replace("≤", "$\\leq$").replace("~", "$\\sim$"))

    out = ["\\begin{tabular}{lll" + "r" * (len(HEADER) - 3) + "}", "\\toprule",
           " & ".join(tex(h) for h in HEADER) + " \\\\", "\\midrule"]
    previous = None
    for row in table_rows(df):
        if previous is not None and row[:2] != previous:
            out.append("\\midrule")
        previous = row[:2]
        out.append(" & ".join(tex(c) for c in row) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


CLASSICAL_HEADER = ("family", "split", "method", "tasks", "reached", "time (s) median",
                    "time (s) mean", "solver calls", "coef err final", "coef threshold")


def classical_markdown(summary: pd.DataFrame) -> str:
    """The ``classical`` baseline's rows (:func:`metapinn.stats.classical_summary`) as a
    Markdown table: tasks that reached the coefficient threshold, the median and mean wall
    time to it, the median solver calls and final coefficient error."""
    lines = ["| " + " | ".join(CLASSICAL_HEADER) + " |", "|" + "---|" * len(CLASSICAL_HEADER)]
    for r in summary.itertuples():
        lines.append("| " + " | ".join([
            r.pde, r.split, r.method, str(r.n_tasks), f"{r.n_reached}/{r.n_tasks}",
            _fmt(r.time_to_threshold_s), _fmt(r.mean_time_to_threshold_s),
            f"{r.solver_calls:.0f}", f"{r.coef_rel_err_final:.2e}",
            _fmt(r.threshold_coef_rel_err, 3)]) + " |")
    return "\n".join(lines) + "\n"


def write_tables(df: pd.DataFrame, csv: str | os.PathLike, md: str | os.PathLike,
                 tex: str | os.PathLike) -> None:
    """Write the speedup table as CSV (every column), Markdown and LaTeX (booktabs)."""
    atomic_write(csv, lambda tmp: df.to_csv(tmp, index=False, float_format="%.6g"))
    for path, text in ((md, markdown(df)), (tex, latex(df))):
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
