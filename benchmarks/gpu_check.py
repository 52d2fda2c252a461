"""CUDA correctness of every adaptation path, against the CPU (run by ``gpu_check.sh``).

For each family: three tasks with their own learning rates and initialisations, 30 Adam
steps in float64, logged every 10. The reference is the serial eager run on the CPU; on
CUDA run the serial eager step, the serial compiled step, the batched eager program and
the batched compiled program (``adapt.compile``, ``adapt.batch``). Printed: the largest
relative difference of the logged ``u_rel_l2`` and of the final parameters from the
reference. Different kernels sum in different orders, so the eager paths should agree to
~1e-10 (float64 round-off grown over 30 steps) and the compiled ones to ~1e-8; anything
above ``--rtol`` (default 1e-6) fails the check (exit 1), as does any exception.

With ``--meta``: meta-training's graph-free steps instead (``Context.compile_inner``, as a
long job runs them): Reptile, LEAP, pretraining and the hypernetwork (no inner steps), one
meta-gradient of two tasks in float64 with the compiled steps on ``--device`` against the
eager CPU one, and the validation loss after compiled inner runs. On CUDA, Reptile and the
hypernetwork vmap their tasks (eagerly) and the others compile.

Usage: python benchmarks/gpu_check.py [--device cuda] [--rtol 1e-6] [--meta]
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

from metapinn.adapt import CompiledSolution, Evaluator, adapt, adapt_batch
from metapinn.config import compose, run_config
from metapinn.loss import loss_parts
from metapinn.meta import get_method, method_settings
from metapinn.meta.base import Context, meta_task
from metapinn.metatrain import validation_loss
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
    forward = CompiledSolution() if compile else None  # the evaluation compiled too
    evaluate = [Evaluator(rc.pde, t, rc.dtype, rc.device, forward=forward) for t in tasks]
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


def meta_context(method: str, device: str, compile_inner: bool) -> Context:
    rc = run_config(compose(["pde=burgers", "model.hidden=[16,16]", "pde.n_collocation=200",
                             "pde.n_boundary=40", "pde.n_obs=50", "dtype=float64",
                             f"device={device}"]))
    ms = method_settings(method, meta_batch=2, inner_steps=0 if method == "hypernet" else 5,
                         inner_lr=0.01, inner_optimizer="adam")
    tasks = [meta_task(rc, make_task(rc.pde, i, TaskSettings(n_obs=50)), 0) for i in range(3)]
    return Context(rc, ms, 0, tasks[:2], tasks[2:], compile_inner=compile_inner)


def meta_check(device: str, rtol: float) -> int:
    """Compiled graph-free meta-training steps on ``device`` against the eager CPU ones."""
    failed = 0
    print(f"{'method':9s} {'grad diff':>10s} {'val diff':>10s} {'seconds':>8s}")
    for name in ("reptile", "leap", "pretrain", "hypernet"):
        method = get_method(name)
        t0 = time.perf_counter()
        try:
            out = {}
            for dev, comp in (("cpu", False), (device, True)):
                ctx = meta_context(name, dev, comp)
                meta = {k: v.detach() for k, v in method.init_meta(ctx).items()}
                g, _ = method.meta_grad(meta, ctx.train, ctx)
                out[dev if comp else "ref"] = ({k: v.cpu() for k, v in g.items()},
                                               validation_loss(method, meta, ctx),
                                               ctx.compile_inner)
        except Exception as err:  # noqa: BLE001 - report every method, then fail
            print(f"{name:9s} FAILED: {type(err).__name__}: {err}")
            failed += 1
            continue
        (g_ref, v_ref, _), (g, v, still) = out["ref"], out[device]
        dg = max(float((g[k] - g_ref[k]).abs().max() / g_ref[k].abs().max().clamp_min(1e-30))
                 for k in g_ref)
        dv = abs(v - v_ref) / abs(v_ref)
        ok = dg <= rtol and dv <= rtol and still  # still: no compile failure on the way
        failed += not ok
        print(f"{name:9s} {dg:10.2e} {dv:10.2e} {time.perf_counter() - t0:8.1f}"
              f"{'' if ok else '  <-- FAIL' + ('' if still else ' (compile failed)')}",
              flush=True)
    print("meta check:", "FAILED" if failed else "every method agrees with the CPU")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--meta", action="store_true", help="check meta-training's compiled "
                    "graph-free steps instead of the adaptation paths")
    args = ap.parse_args(argv)
    if args.meta:
        return meta_check(args.device, args.rtol)
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
