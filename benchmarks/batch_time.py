"""Milliseconds per task-step: T tasks adapted one after another vs as one batched program.

Setup
    Burgers inverse tasks (``pde=burgers``, tasks 0..T-1 of the default task settings: the
    same point counts, different observations), each adapted from the scratch
    initialisation with Adam at the default learning rate and schedule. Two network/point
    sizes: ``quick`` (32×3 tanh, 1,000 collocation points, as ``experiment=quick``) and
    ``paper`` (50×4, 2,000 points, as ``experiment=paper``); 200 boundary points and 200
    observations in both.

What is timed
    ``adapt.steps`` (``--steps``) optimiser steps of every task, no evaluation, after a
    warm-up run of the same variant and shape (for the compiled variants the warm-up is the
    compile, reported separately as ``compile_s``). A variant's time is the median over
    ``--repeats`` runs of the total wall time divided by T × steps.

    * ``serial``: :func:`metapinn.adapt.adapt`, one task after another, eager step
      (``adapt.compile=false``).
    * ``serial_compiled``: the same with the compiled step (``adapt.compile=true``, the CPU
      default).
    * ``batched``: :func:`metapinn.adapt.adapt_batch`, all T tasks as one ``vmap`` program,
      eager.
    * ``batched_compiled``: the same, the batched step ``torch.compile``d (what
      ``adapt.batch`` runs by default on CUDA).

    With ``--serial-tasks N`` the serial variants run only the first min(T, N) tasks (their
    time per task-step does not depend on T), which keeps T = 256 affordable.

    ``ratio`` columns divide a batched variant by its serial counterpart (< 1: batching
    pays). Every variant's final loss of every task is compared with the serial run's
    (``max_loss_rel_diff``: float32 round-off only; a warning is printed above 1e-3).

Usage
    python benchmarks/batch_time.py [--tasks 1 4 16 64] [--sizes quick paper]
        [--device cpu|cuda] [--steps 20] [--repeats 3] [--threads N]
        [--variants serial serial_compiled batched batched_compiled] [--serial-tasks N]
        [--out DIR]

Writes ``<out>/batch_time.{nc,md}`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from metapinn.adapt import adapt, adapt_batch
from metapinn.config import compose, run_config
from metapinn.loss import loss_parts
from metapinn.ncio import write_netcdf
from metapinn.nets import scratch_params
from metapinn.tasks import TaskSettings, make_task, task_tensors

SIZES = {"quick": ["model.hidden=[32,32,32]", "pde.n_collocation=1000"],
         "paper": ["model.hidden=[50,50,50,50]", "pde.n_collocation=2000"]}
VARIANTS = ("serial", "serial_compiled", "batched", "batched_compiled")


def problem(size: str, n_tasks: int, device: str):
    """Run config, initialisation, task data and loss of ``n_tasks`` Burgers tasks."""
    rc = run_config(compose(["pde=burgers", *SIZES[size], "pde.n_boundary=200",
                             "pde.n_obs=200", "dtype=float32", f"device={device}"]))
    ts = TaskSettings(n_train=n_tasks, n_obs=200)  # enough task indices for any T
    tasks = [make_task(rc.pde, i, ts) for i in range(n_tasks)]
    data = [task_tensors(rc.pde, t, rc.n_collocation, rc.n_boundary, 0, rc.dtype, rc.device)
            for t in tasks]
    return rc, scratch_params(rc, 0), data, partial(loss_parts, pde=rc.pde, weights=rc.weights)


def run_variant(variant: str, rc, init, data, loss_fn, steps: int):
    """(seconds of all len(data) × steps task-steps, compile seconds, final losses)."""
    settings = replace(rc.adapt, steps=steps, log_every=10 ** 9,
                       compile=variant.endswith("compiled"))
    if variant.startswith("batched"):
        results = adapt_batch([init] * len(data), loss_fn, data, settings)
        return (results[0].wall_time * len(data), results[0].compile_time,
                [r.records[-1]["loss"] for r in results])
    results = [adapt(init, lambda p, d=d: loss_fn(p, d), settings) for d in data]
    return (sum(r.wall_time for r in results), max(r.compile_time for r in results),
            [r.records[-1]["loss"] for r in results])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--serial-tasks", type=int, default=None,
                    help="run the serial variants on at most this many tasks")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda, but torch sees no CUDA device")
    if min(args.tasks) < 1 or args.steps < 1 or args.repeats < 1:
        ap.error("--tasks, --steps and --repeats must be ≥ 1")
    torch.set_num_threads(args.threads)
    shape = (len(args.sizes), len(args.tasks), len(args.variants))
    ms, compile_s = np.full(shape, np.nan), np.full(shape, np.nan)
    loss_diff = np.full(shape[:2], np.nan)
    for a, size in enumerate(args.sizes):
        for b, n in enumerate(args.tasks):
            rc, init, data, loss_fn = problem(size, n, args.device)
            finals = {}
            for c, variant in enumerate(args.variants):
                part = data
                if variant.startswith("serial") and args.serial_tasks:
                    part = data[:args.serial_tasks]
                warm = run_variant(variant, rc, init, part, loss_fn, 2)  # warm-up / compile
                compile_s[a, b, c] = warm[1]
                runs = [run_variant(variant, rc, init, part, loss_fn, args.steps)
                        for _ in range(args.repeats)]
                ms[a, b, c] = (statistics.median(r[0] for r in runs)
                               / (len(part) * args.steps) * 1e3)
                finals[variant] = np.array(runs[-1][2])
                print(f"{size:5s} T={n:<4d} {variant:17s} {ms[a, b, c]:8.3f} ms/task-step "
                      f"(compile {compile_s[a, b, c]:.1f} s)", flush=True)
            ref = finals.get("serial", next(iter(finals.values())))
            loss_diff[a, b] = max(float(np.max(np.abs(f[:len(ref)] - ref[:len(f)])
                                               / np.abs(ref[:len(f)])))
                                  for f in finals.values())
            if not loss_diff[a, b] <= 1e-3:
                print(f"WARNING {size} T={n}: final losses differ between variants by "
                      f"{loss_diff[a, b]:.1e} relative", flush=True)

    ds = xr.Dataset(
        {"ms_per_task_step": (("size", "tasks", "variant"), ms,
                              {"long_name": "wall time per task and step", "units": "ms"}),
         "compile_time": (("size", "tasks", "variant"), compile_s,
                          {"long_name": "first-call compile time", "units": "s"}),
         "max_loss_rel_diff": (("size", "tasks"), loss_diff,
                               {"long_name": "largest relative difference of a final loss "
                                "from the serial run's", "units": "1"})},
        coords={"size": list(args.sizes), "tasks": list(args.tasks),
                "variant": list(args.variants)},
        attrs={"device": torch.cuda.get_device_name() if args.device.startswith("cuda")
               else platform.processor() or platform.machine(),
               "threads": args.threads, "steps": args.steps, "repeats": args.repeats,
               "serial_tasks": args.serial_tasks or 0,
               "torch": torch.__version__, "date": datetime.now().isoformat(timespec="seconds"),
               "load": " ".join(f"{x:.2f}" for x in os.getloadavg())})
    args.out.mkdir(parents=True, exist_ok=True)
    write_netcdf(ds, args.out / "batch_time.nc", title="batched vs serial adaptation")
    table = markdown(ds)
    (args.out / "batch_time.md").write_text(table)
    print(table)
    return 0


def markdown(ds: xr.Dataset) -> str:
    variants = [str(v) for v in ds.variant.values]
    pairs = [(b, s) for b, s in (("batched", "serial"), ("batched_compiled", "serial_compiled"))
             if b in variants and s in variants]
    head = (["size", "T", *[f"{v} ms" for v in variants],
             *[f"{b} / {s}" for b, s in pairs], "max loss rel diff"])
    lines = [f"# Batched vs serial adaptation ({ds.attrs['date']})", "",
             f"device {ds.attrs['device']}, {ds.attrs['threads']} threads, torch "
             f"{ds.attrs['torch']}, {ds.attrs['steps']} steps × {ds.attrs['repeats']} "
             f"repeats (median), load average before writing: {ds.attrs['load']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in ds["size"].values:
        for n in ds.tasks.values:
            row = ds.sel(size=size, tasks=n)
            t = row.ms_per_task_step
            cells = [str(size), str(n), *[f"{float(t.sel(variant=v)):.3f}" for v in variants],
                     *[f"{float(t.sel(variant=b) / t.sel(variant=s)):.2f}×" for b, s in pairs],
                     f"{float(row.max_loss_rel_diff):.1e}"]
            lines.append("| " + " | ".join(cells) + " |")
    compile_s = ds.compile_time.max("tasks")
    lines += ["", "Compile time (s, the largest over T): " + ", ".join(
        f"{size}/{v} {float(compile_s.sel(size=size, variant=v)):.1f}"
        for size in ds["size"].values for v in variants if v.endswith("compiled"))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
