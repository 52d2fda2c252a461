"""Meta-training's graph-free steps, eager against compiled, side by side.

Reptile's and LEAP's inner runs, pretraining's joint gradient and the hypernetwork's
(without inner steps) carry no graph through an inner loop, so each of their steps can be
one ``torch.compile``d function, as the
evaluation's steps are (``Context.compile_inner``; a job turns it on from
``metapinn.meta.base.COMPILE_INNER_FROM`` gradient evaluations). This script measures what
that gives per outer step and what it costs to compile, to set that threshold.

Setup
    For each method, an experiment's network, points and method settings (``--experiment``:
    ``quick``'s 32×3 network on 1,000 points, or ``paper``'s 50×4; its ``method_overrides``),
    one meta-batch of that experiment's size drawn from tasks 0..B-1 of ``pde=burgers``,
    float32, CPU. ``meta_grad`` of the method is timed with the compiled steps off (the
    eager reference: Reptile and the hypernetwork vmapped over the batch, as ``method.vmap``
    has it) and on (the
    tasks one after another, each step compiled), alternating, median of ``--repeats`` after
    a warm-up. The first compiled call is timed apart: with the Inductor cache of
    ``TORCHINDUCTOR_CACHE_DIR`` (point it at an empty folder for a cold compile).

Printed per method: ms per outer step each way, their ratio, the gradient evaluations of
one outer step, the first call's seconds, and the gradient evaluations after which the
compiled job has caught up (first call ÷ saving per evaluation). The compiled and eager
meta-gradients are compared (relative max difference, float32 round-off expected).

Usage: python benchmarks/meta_compile.py [--experiment quick|paper] [--methods reptile leap
           pretrain hypernet] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from metapinn.config import compose, method_config, run_config
from metapinn.meta import get_method
from metapinn.meta.base import Context, meta_task
from metapinn.tasks import TaskSettings, make_task


def setup(experiment: str, name: str):
    cfg = compose([f"experiment={experiment}", "pde=burgers", f"method={name}"])
    rc, ms = run_config(cfg), method_config(cfg)
    tasks = [meta_task(rc, make_task(rc.pde, i, TaskSettings()), 0)
             for i in range(ms.meta_batch)]
    method = get_method(name)
    eager = Context(rc, ms, 0, tasks, compile_inner=False)
    meta = {k: v.detach() for k, v in method.init_meta(eager).items()}
    return method, meta, tasks, eager, replace(eager, compile_inner=True), ms


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def measure(experiment: str, name: str, repeats: int) -> dict:
    method, meta, tasks, eager, compiled, ms = setup(experiment, name)
    first, (g_c, _) = timed(method.meta_grad, meta, tasks, compiled)
    _, (g_e, _) = timed(method.meta_grad, meta, tasks, eager)
    diff = max(float((g_c[k] - g_e[k]).abs().max() / g_e[k].abs().max().clamp_min(1e-30))
               for k in g_e)
    times = {"eager": [], "compiled": []}
    for _ in range(repeats):  # alternating: a change in machine load hits both alike
        times["eager"].append(timed(method.meta_grad, meta, tasks, eager)[0])
        times["compiled"].append(timed(method.meta_grad, meta, tasks, compiled)[0])
    e, c = (statistics.median(times[k]) for k in ("eager", "compiled"))
    evals = ms.gradient_evals_per_step(1.0)
    saving = (e - c) / evals
    return {"method": name, "eager_ms": 1e3 * e, "compiled_ms": 1e3 * c, "ratio": c / e,
            "evals": evals, "first_s": first,
            "break_even": first / saving if saving > 0 else float("inf"), "diff": diff}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="quick")
    ap.add_argument("--methods", nargs="+", default=["reptile", "leap", "pretrain", "hypernet"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), experiment "
          f"{args.experiment}, burgers, float32, CPU")
    print(f"{'method':9s} {'eager ms':>9s} {'compiled':>9s} {'ratio':>6s} {'evals/step':>10s} "
          f"{'1st call s':>10s} {'pays after':>10s} {'Δ grad':>8s}")
    for name in args.methods:
        r = measure(args.experiment, name, args.repeats)
        print(f"{r['method']:9s} {r['eager_ms']:9.1f} {r['compiled_ms']:9.1f} "
              f"{r['ratio']:6.2f} {r['evals']:10.0f} {r['first_s']:10.1f} "
              f"{r['break_even']:10.0f} {r['diff']:8.1e}")


if __name__ == "__main__":
    main()
