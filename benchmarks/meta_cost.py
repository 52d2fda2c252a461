"""What one outer step of each meta-learning method costs, in task-loss gradient evaluations.

Equal meta-training compute (``experiment.meta_budget``) counts a method's work in
gradient evaluations of one task's loss: Reptile and LEAP spend k per task and outer step
(k = ``inner_steps``), first-order MAML k + 1, pretraining 1, and the second-order methods
(MAML, the hypernetwork with inner steps) (k + 1) × c, where c is the cost of a backward
pass through the inner loop relative to a first-order gradient: the experiment's
``second_order_cost``. This script measures c, and checks the first-order counts.

Setup
    For each family, the ``quick`` experiment's network, points and method settings (its
    ``method_overrides``), a meta-batch of that experiment's size drawn from tasks 0..B-1,
    float32, on ``--device``. The unit is the wall time of one first-order gradient of the
    task loss for every task of the meta-batch (``torch.func.grad`` of the loss, vmapped over
    the batch as the methods do); a method's time is that of ``meta_grad`` for the batch.
    Times are medians of ``--repeats`` after a warm-up.

Printed per family and method: ms per outer step, the evaluations the budget counts for it
(with c = 1 for the second-order methods), the measured cost in units, and their ratio. For
the first-order methods the ratio should be near 1 (it is their per-step overhead); for
MAML and the hypernetwork it is the measured c. The last line is the median c over the
families and second-order methods: the value to put in ``experiment.second_order_cost``.

Usage: python benchmarks/meta_cost.py [--pdes burgers cdr darcy] [--repeats 5]
           [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.func import grad, vmap

from metapinn.config import compose, method_config, run_config
from metapinn.loss import stack
from metapinn.meta import get_method
from metapinn.meta.base import Context, meta_task
from metapinn.tasks import TaskSettings, make_task

METHODS = ["reptile", "leap", "fomaml", "maml", "hypernet", "pretrain"]


def _median_time(repeats: int, device: str, fn, *args) -> float:
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(*args)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(pde: str, repeats: int, device: str) -> list[dict]:
    rows = []
    unit = None
    for name in METHODS:
        cfg = compose(["experiment=quick", f"pde={pde}", f"method={name}", f"device={device}"])
        rc, ms = run_config(cfg), method_config(cfg)
        tasks = [meta_task(rc, make_task(rc.pde, i, TaskSettings()), 0)
                 for i in range(ms.meta_batch)]
        ctx = Context(rc, ms, 0, tasks)
        method = get_method(name)
        meta = {k: v.detach() for k, v in method.init_meta(ctx).items()}
        if unit is None:  # one first-order gradient of every task's loss, vmapped
            phi = {k: v.detach() for k, v in get_method("reptile").init_meta(ctx).items()}
            data = stack([t.support for t in tasks])
            g = vmap(grad(ctx.loss), in_dims=(None, 0))
            unit = _median_time(repeats, device, g, phi, data) / ms.meta_batch
        seconds = _median_time(repeats, device, method.meta_grad, meta, tasks, ctx)
        counted = ms.gradient_evals_per_step(1.0)
        measured = seconds / unit
        rows.append({"pde": pde, "method": name, "ms": 1e3 * seconds, "counted": counted,
                     "measured": measured, "ratio": measured / counted,
                     "second_order": ms.gradient_evals_per_step(2.0) != counted})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdes", nargs="+", default=["burgers", "cdr", "darcy"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}")
    print(f"{'family':8s} {'method':9s} {'ms/outer step':>13s} {'counted (c=1)':>13s} "
          f"{'measured':>9s} {'ratio':>6s}")
    second = []
    for pde in args.pdes:
        for r in measure(pde, args.repeats, args.device):
            print(f"{r['pde']:8s} {r['method']:9s} {r['ms']:13.1f} {r['counted']:13.0f} "
                  f"{r['measured']:9.1f} {r['ratio']:6.2f}{'  (c)' if r['second_order'] else ''}")
            if r["second_order"]:
                second.append(r["ratio"])
    print(f"median second-order cost c over families and methods: "
          f"{statistics.median(second):.2f} (range {min(second):.2f}–{max(second):.2f})")


if __name__ == "__main__":
    main()
