"""CUDA correctness of every adaptation path, against the CPU (run by ``gpu_check.sh``).

For each family: three tasks with their own learning rates and initialisations, 30 Adam
steps in float64, logged every 10. The reference is the serial eager run on the CPU; on
CUDA run the serial eager step, the serial compiled step, the batched eager program and
the batched compiled program (``adapt.compile``, ``adapt.batch``). Printed: the largest
relative difference of the logged ``u_rel_l2`` and of the final parameters from the
reference. Different kernels sum in different orders, so the eager paths should agree to
~1e-10 (float64 round-off grown over 30 steps) and the compiled ones to ~1e-8; anything
above ``--rtol`` (default 1e-6) fails the check (exit 1), as does any exception.

Usage: python benchmarks/gpu_check.py [--device cuda] [--rtol 1e-6]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from metapinn.adapt import Evaluator, adapt, adapt_batch
from metapinn.config import compose, run_config
from metapinn.loss import loss_parts
from metapinn.nets import scratch_params
from metapinn.pdes import FAMILIES
from metapinn.tasks import TaskSettings, make_task, task_tensors

LRS = [1e-3, 4e-3, 2e-2]


def runs(pde: str, device: str, batch: bool, compile: bool):
    rc = run_config(compose([f"pde={pde}", "model.hidden=[16,16]", "pde.n_collocation=200",
                             "pde.n_boundary=40", "pde.n_obs=50", "adapt.steps=30",
                             "adapt.log_every=10", "dtype=float64", f"device={device}",
                             f"adapt.compile={str(compile).lower()}"]))
    tasks = [make_task(rc.pde, i, TaskSettings(n_obs=50)) for i in range(3)]
    data = [task_tensors(rc.pde, t, rc.n_collocation, rc.n_boundary, 0, rc.dtype, rc.device)
            for t in tasks]
    inits = [scratch_params(rc, s) for s in range(3)]
    assert all(v.device.type == torch.device(device).type for p in inits for v in p.values())
    evaluate = [Evaluator(rc.pde, t, rc.dtype, rc.device) for t in tasks]
    loss_fn = partial(loss_parts, pde=rc.pde, weights=rc.weights)
    if batch:
        return adapt_batch(inits, loss_fn, data, rc.adapt, lrs=LRS, evaluate=evaluate)
    return [adapt(p, lambda q, d=d: loss_fn(q, d), replace(rc.adapt, lr=lr), evaluate=e)
            for p, d, e, lr in zip(inits, data, evaluate, LRS, strict=True)]


def rel_diff(ref, got) -> tuple[float, float]:
    u = max(float(np.max(np.abs(np.array([r["u_rel_l2"] for r in g.records])
                                - np.array([r["u_rel_l2"] for r in f.records]))
                         / np.array([r["u_rel_l2"] for r in f.records])))
            for f, g in zip(ref, got, strict=True))
    p = max(float((g.params[k].cpu() - f.params[k]).abs().max()
                   / f.params[k].abs().max().clamp_min(1e-30))
            for f, g in zip(ref, got, strict=True) for k in f.params)
    return u, p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rtol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    failed = 0
    print(f"{'family':8s} {'path':17s} {'u_rel_l2 diff':>14s} {'param diff':>11s} "
          f"{'diverged':>8s} {'seconds':>8s}")
    refs = {}
    # eager paths of every family first, then the compiled ones (the compiles are slow: a
    # time limit that cuts the run short loses the fewest results this way)
    for compile, pde, batch in itertools.product((False, True), FAMILIES, (False, True)):
        if pde not in refs:
            refs[pde] = runs(pde, "cpu", batch=False, compile=False)
        ref = refs[pde]
        name = f"{'batched' if batch else 'serial'}{'_compiled' if compile else ''}"
        t0 = time.perf_counter()
        try:
            got = runs(pde, args.device, batch, compile)
        except Exception as err:  # noqa: BLE001 - report every path, then fail
            print(f"{pde:8s} {name:17s} FAILED: {type(err).__name__}: {err}")
            failed += 1
            continue
        u, p = rel_diff(ref, got)
        n_div = sum(g.diverged_at is not None for g in got)
        ok = u <= args.rtol and p <= args.rtol and n_div == 0
        failed += not ok
        print(f"{pde:8s} {name:17s} {u:14.2e} {p:11.2e} {n_div:8d} "
              f"{time.perf_counter() - t0:8.1f}{'' if ok else '  <-- FAIL'}", flush=True)
    print("CUDA check:", "FAILED" if failed else "all paths agree with the CPU")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
