"""What Snakemake's own scheduler costs in CPU, with its default job-rate setting and ours.

Snakemake 9's local scheduler re-evaluates every ``--max-jobs-per-timespan`` timespan (its
default ``100/1s``): each pass of its loop starts a timer that wakes the loop again one
timespan later. Every job that finishes wakes the loop once more, and that pass starts a
timer of its own, so the number of these one-second wake-up chains grows by one per
finished job. After a few hundred jobs the scheduler wakes hundreds of times a second
and takes a large share of a core from the jobs (seen in the ``standard`` run: about 100
threads and a third of a core after 95 jobs). ``profiles/default/config.yaml`` sets a
5-second timespan, so each chain wakes 5× less often; Snakemake then exits up to 5 s after
its last job, since it waits for the pending timers (non-daemon threads).

This runs a toy workflow of ``--jobs`` jobs that only sleep (no CPU of their own) with
both settings, one after the other, and prints the CPU time of the Snakemake process
(user + system of it and its children: the jobs' ``sleep`` costs nothing) and the ratio.

Usage: python benchmarks/scheduler_overhead.py [--jobs 200] [--sleep 1] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """\
rule all:
    input: expand("out/{{i}}.txt", i=range({n}))

rule one:
    output: "out/{{i}}.txt"
    shell: "sleep {sleep}; touch {{output}}"
"""


def profile_setting() -> str:
    """The ``max-jobs-per-timespan`` of the project's default profile."""
    path = Path(__file__).resolve().parents[1] / "profiles" / "default" / "config.yaml"
    match = re.search(r'^max-jobs-per-timespan:\s*"?([^"\s]+)"?', path.read_text(), re.M)
    if match is None:
        sys.exit(f"{path} sets no max-jobs-per-timespan")
    return match.group(1)


def run(workdir: Path, setting: str, cores: int) -> tuple[float, float]:
    """(CPU seconds of Snakemake and its children, wall seconds) of one run."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all",
                    "--max-jobs-per-timespan", setting],
                   cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    return (after.children_user - before.children_user
            + after.children_system - before.children_system), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    ours = profile_setting()
    print(f"{args.jobs} jobs of `sleep {args.sleep:g}` on {args.cores} cores "
          f"(ideal wall {args.jobs * args.sleep / args.cores:.0f} s)")
    print(f"{'max-jobs-per-timespan':>22s} {'CPU s':>8s} {'wall s':>8s} {'CPU ms/job':>11s}")
    cpu = {}
    for setting in ("100/1s", ours):
        with tempfile.TemporaryDirectory(prefix="smk_overhead_") as tmp:
            (Path(tmp) / "Snakefile").write_text(SNAKEFILE.format(n=args.jobs, sleep=args.sleep))
            cpu[setting], wall = run(Path(tmp), setting, args.cores)
        label = setting + (" (Snakemake)" if setting == "100/1s" else " (ours)")
        print(f"{label:>22s} {cpu[setting]:8.1f} {wall:8.1f} "
              f"{1000 * cpu[setting] / args.jobs:11.1f}", flush=True)
    print(f"ratio (ours / Snakemake's default): {cpu[ours] / cpu['100/1s']:.2f}")


if __name__ == "__main__":
    main()
