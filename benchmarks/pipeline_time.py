"""Where a finished pipeline run's time went: job time, the work inside it, and the bound.

Every job of the workflow writes a Snakemake ``benchmark:`` file (``logs/<exp>/benchmark/
…tsv``: its wall time ``s``), and the training jobs record in their results how long their
actual work took:

* adaptation files (``adapt``, ``budget/adapt``, ``own_lr/adapt``): ``wall_time`` per task at
  the logged steps, cumulative; a task's last value is its solve time (its steps; the
  compile and the logged evaluations are not in it);
* learning-rate tuning files (``tune``, ``own_lr/tune``): ``wall_time`` per run, the same;
* meta-training histories: ``total_train_time_s`` (the outer loop, validation included);
* classical-baseline files: ``wall_time`` per task, cumulative over its evaluations.

Each job's log says how long its compiled functions took to compile or load ("… compiled in
X s"). The script adds these up per rule and prints, per rule, the jobs' wall time, the work
inside, the compile time, and the rest: starting Python and importing torch, reading and
writing files, evaluations, Snakemake's own start of the job. Rules whose results carry no
time (task generation, Taylor checks, tables, figures) count as no work, so the totals
below are lower bounds on the work.

From the totals it prints two bounds on the wall time of ANY schedule or restructuring of
the run that keeps its work: the work alone, and the work plus the compiles, spread
perfectly over ``--cores`` cores (every job of the workflow runs one thread per core). Given
``--reference-s`` (the wall time of another run, e.g. the commit before an optimisation),
it prints both as ratios of it: a target ratio below the first bound cannot be met by
removing overheads; the work itself has to get faster or smaller.

Usage
    python benchmarks/pipeline_time.py [--root .] [--experiment quick] [--cores 2]
        [--wall-s SECONDS] [--reference-s SECONDS]

``--root`` is the folder ``snakemake`` ran in (a clone). Without ``--wall-s`` the run's
wall time is taken from its newest Snakemake log (``.snakemake/log/``: the file's name is
its start, its last change the end).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import xarray as xr

# benchmark path prefix → (rule, the result file of the job, from the rest of its path)
RESULTS = (
    ("budget/meta_train/", "meta_train_budget", "budget/meta/{}/history.nc"),
    ("budget/adapt/", "adapt_budget", "budget/adapt/{}.nc"),
    ("own_lr/tune/", "tune_method_lr", "own_lr/tune/{}.nc"),
    ("own_lr/adapt/", "adapt_own_lr", "own_lr/adapt/{}.nc"),
    ("meta_train/", "meta_train", "meta/{}/history.nc"),
    ("adapt/", "adapt", "adapt/{}.nc"),
    ("tune_scratch_lr/", "tune_scratch_lr", "tune/{}.nc"),
    ("classical/", "classical", "classical/{}.nc"),
)
CUMULATIVE = ("step", "evaluation")  # wall_time grows along these dims: a run's time is the max
COMPILED = re.compile(r"compiled in ([0-9.]+) s")


@dataclass
class Rule:
    jobs: int = 0
    job_s: float = 0.0
    work_s: float = 0.0
    compile_s: float = 0.0
    timed: int = 0  # jobs whose results carry their work time
    missing: list[str] = field(default_factory=list)

    @property
    def rest_s(self) -> float:
        return self.job_s - self.work_s - self.compile_s


def work_seconds(ds: xr.Dataset) -> float | None:
    """Seconds of work a result file records (None: it records none)."""
    if "total_train_time_s" in ds.attrs:
        return float(ds.attrs["total_train_time_s"])
    if "wall_time" not in ds:
        return None
    w = ds["wall_time"]
    along = [d for d in w.dims if d in CUMULATIVE]
    per_run = w.max(along, skipna=True) if along else w
    return float(np.nansum(per_run.values))


def compile_seconds(log: Path) -> float:
    """The compile (or cache load) times a job's log reports."""
    if not log.exists():
        return 0.0
    return sum(float(x) for x in COMPILED.findall(log.read_text(errors="replace")))


def job_seconds(tsv: Path) -> float:
    """Wall time of a job from its Snakemake benchmark file (header line, then values)."""
    header, values = tsv.read_text().splitlines()[:2]
    return float(dict(zip(header.split("\t"), values.split("\t"), strict=True))["s"])


def collect(root: Path, experiment: str) -> dict[str, Rule]:
    bench = root / "logs" / experiment / "benchmark"
    if not bench.is_dir():
        raise SystemExit(f"{bench} does not exist: is {root} a folder where "
                         f"`snakemake --config experiment={experiment}` ran?")
    rules: dict[str, Rule] = {}
    for tsv in sorted(bench.rglob("*.tsv")):
        rel = tsv.relative_to(bench).with_suffix("").as_posix()
        match = next(((name, pattern.format(rel[len(prefix):]))
                      for prefix, name, pattern in RESULTS if rel.startswith(prefix)), None)
        name = match[0] if match else rel.split("/")[0]
        rule = rules.setdefault(name, Rule())
        rule.jobs += 1
        rule.job_s += job_seconds(tsv)
        rule.compile_s += compile_seconds(root / "logs" / experiment / f"{rel}.log")
        if match is None:
            continue
        result = root / "results" / experiment / match[1]
        work = None
        if result.exists():
            with xr.open_dataset(result) as ds:
                work = work_seconds(ds)
        if work is None:
            rule.missing.append(match[1])
        else:
            rule.work_s += work
            rule.timed += 1
    return rules


def run_wall_time(root: Path) -> float | None:
    """Seconds between the newest Snakemake log's start (its name) and its last change."""
    logs = sorted((root / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    start = datetime.strptime(logs[-1].name.split(".snakemake")[0], "%Y-%m-%dT%H%M%S.%f")
    return logs[-1].stat().st_mtime - start.timestamp()


def report(rules: dict[str, Rule], cores: int, wall: float | None,
           reference: float | None) -> str:
    lines = ["| rule | jobs | job s | work s | compile s | rest s | rest per job s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in sorted(rules.items(), key=lambda kv: -kv[1].job_s):
        work = f"{r.work_s:.1f}" if r.timed else "–"
        lines.append(f"| {name} | {r.jobs} | {r.job_s:.1f} | {work} | {r.compile_s:.1f} | "
                     f"{r.rest_s:.1f} | {r.rest_s / r.jobs:.2f} |")
    total = Rule(jobs=sum(r.jobs for r in rules.values()),
                 job_s=sum(r.job_s for r in rules.values()),
                 work_s=sum(r.work_s for r in rules.values()),
                 compile_s=sum(r.compile_s for r in rules.values()))
    lines.append(f"| **all** | {total.jobs} | {total.job_s:.1f} | {total.work_s:.1f} | "
                 f"{total.compile_s:.1f} | {total.rest_s:.1f} | "
                 f"{total.rest_s / max(total.jobs, 1):.2f} |")
    missing = [m for r in rules.values() for m in r.missing]
    if missing:
        lines.append(f"\n{len(missing)} result file(s) record no work time (counted as none), "
                     f"e.g. {missing[0]}")
    bounds = {"work alone": total.work_s / cores,
              "work + compiles": (total.work_s + total.compile_s) / cores,
              "all job time (no idle core, no scheduling gap)": total.job_s / cores}
    lines.append(f"\nOn {cores} cores no schedule of the same work finishes in less than:")
    for what, seconds in bounds.items():
        ratio = f" = {seconds / reference:.2f}× the reference ({reference:.1f} s)" \
            if reference else ""
        lines.append(f"- {what}: {seconds:.1f} s{ratio}")
    if wall is not None:
        ratio = f" = {wall / reference:.2f}× the reference" if reference else ""
        lines.append(f"\nThis run's wall time: {wall:.1f} s{ratio}; busy cores "
                     f"{total.job_s / wall:.2f} of {cores} on average.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."),
                    help="the folder snakemake ran in (default: here)")
    ap.add_argument("--experiment", default="quick")
    ap.add_argument("--cores", type=int, default=os.cpu_count(),
                    help="cores the run had (default: this machine's)")
    ap.add_argument("--wall-s", type=float, help="the run's measured wall time, seconds")
    ap.add_argument("--reference-s", type=float,
                    help="another run's wall time, to print the bounds as ratios of it")
    args = ap.parse_args(argv)
    if args.cores < 1:
        ap.error(f"--cores must be ≥ 1, got {args.cores}")
    for name in ("wall_s", "reference_s"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            ap.error(f"--{name.replace('_', '-')} must be a positive number of seconds")
    rules = collect(args.root, args.experiment)
    wall = args.wall_s if args.wall_s is not None else run_wall_time(args.root)
    print(report(rules, args.cores, wall, args.reference_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
