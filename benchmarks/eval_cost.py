"""What the logged evaluation costs against a training step, at each ``adapt.eval_stride``.

Every solve evaluates u_rel_l2 on the reference grid at each logged step (about 80 for
1,000 steps, dense early). Setup: the ``quick`` experiment's network, points and float32,
one thread, the last task of each family; a 300-step solve from scratch gives a
half-trained network. Printed per family and stride: the grid nodes used, the time of one
evaluation (median of ``--repeats``), that time in training steps (the eager step, timed
here the same way), the evaluation's share of a 1,000-step solve, the relative
difference of its u_rel_l2 from the full grid's at the half-trained network, and the
compiled evaluation (what a solve with ``adapt.compile`` and at least
``metapinn.adapt.EVAL_COMPILE_FROM`` logged steps runs): its time, its ratio to the eager
one, and its first call (compiled in this process; the Inductor cache may be warm).

Usage: python benchmarks/eval_cost.py [--pdes burgers cdr darcy] [--strides 1 2 4]
           [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from metapinn.adapt import AdaptSettings, Evaluator
from metapinn.cli import limit_threads
from metapinn.config import compose, run_config
from metapinn.evaluate import initialiser, solve_task
from metapinn.loss import loss_parts
from metapinn.tasks import generate_tasks, task_tensors


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(a, b, repeats: int) -> tuple[float, float]:
    """Median times of ``a`` and ``b``, called alternately (the VM's speed drifts)."""
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((a, b), times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def gradient(params, data, rc) -> None:
    """One eager training step's work: the loss and its gradient."""
    loss = loss_parts(params, data, rc.pde, rc.weights)["total"]
    torch.autograd.grad(loss, list(params.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdes", nargs="+", default=["burgers", "cdr", "darcy"])
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    with limit_threads(1):  # torch, and NumPy's BLAS (the error's norm)
        run(args)


def run(args) -> None:
    print(f"{'family':8s} {'stride':>6s} {'nodes':>7s} {'eval ms':>8s} {'= steps':>8s} "
          f"{'share of solve':>15s} {'u_rel_l2 vs full':>17s} {'compiled ms':>12s} "
          f"{'ratio':>6s} {'first call s':>13s}")
    for name in args.pdes:
        rc = run_config(compose(["experiment=quick", f"pde={name}", "adapt.steps=300",
                                 "adapt.compile=false", "adapt.log_every=300"]))
        task = generate_tasks(rc.pde, rc.tasks)[-1]
        params = solve_task(rc, task, initialiser(rc)).params
        data = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, rc.seed, rc.dtype,
                            rc.device)
        live = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        t_step = median_time(partial(gradient, live, data, rc), args.repeats)
        n_logged = len(AdaptSettings(steps=1000, log_every=50).log_steps())
        full = Evaluator(rc.pde, task, rc.dtype, rc.device)(params)["u_rel_l2"]
        for stride in args.strides:
            ev = Evaluator(rc.pde, task, rc.dtype, rc.device, stride)
            compiled = Evaluator(rc.pde, task, rc.dtype, rc.device, stride, compile=True)
            compiled(params)  # the first call compiles
            t_eval, t_compiled = interleaved(partial(ev, params), partial(compiled, params),
                                             args.repeats)
            share = n_logged * t_eval / (n_logged * t_eval + 1000 * t_step)
            diff = ev(params)["u_rel_l2"] / full - 1
            print(f"{name:8s} {stride:6d} {ev.points.shape[0]:7d} {1e3 * t_eval:8.1f} "
                  f"{t_eval / t_step:8.1f} {share:15.0%} {diff:+17.2%} "
                  f"{1e3 * t_compiled:12.1f} {t_compiled / t_eval:6.2f} "
                  f"{compiled.compile_time:13.2f}", flush=True)
        print(f"{name:8s} eager training step {1e3 * t_step:.1f} ms; {n_logged} logged steps "
              f"per 1,000-step solve")


if __name__ == "__main__":
    main()
