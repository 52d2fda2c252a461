"""The ``scratch_lbfgs`` baseline in float32 and float64: does L-BFGS's line search stall?

Setup: the ``standard`` experiment (32×3 network, 1,000 collocation points, 500 steps:
250 Adam, then 250 L-BFGS iterations), each family's ``val`` tasks at the family's rate
(``--lrs``, default: the rates tune-lr chose in the standard run), one thread. Printed per
family and dtype: the L-BFGS iterations made (fewer than asked: the line search found no
decrease, i.e. it stalled), the loss and u_rel_l2 after the Adam phase and at the end,
the largest coefficient error at the end, and the solve's wall time; then the float64 /
float32 ratios of the final error and the time. Adam alone for all 500 steps is the
reference row (``adam``).

Usage: python benchmarks/lbfgs_dtype.py [--pdes burgers cdr darcy] [--tasks 2]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from metapinn.config import compose, run_config
from metapinn.evaluate import initialiser, solve_task
from metapinn.meta import method_settings
from metapinn.tasks import generate_tasks

STANDARD_LR = {"burgers": 0.04, "cdr": 0.005, "darcy": 0.005}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdes", nargs="+", default=["burgers", "cdr", "darcy"])
    ap.add_argument("--tasks", type=int, default=2, help="val tasks per family")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'family':8s} {'task':>4s} {'variant':8s} {'lbfgs its':>9s} {'loss@Adam':>10s} "
          f"{'loss end':>10s} {'u@Adam':>8s} {'u end':>8s} {'coef end':>8s} {'s':>6s}")
    for name in args.pdes:
        finals: dict[str, list[tuple[float, float]]] = {}
        for variant, dtype in (("adam", "float32"), ("float32", "float32"),
                               ("float64", "float64")):
            rc = run_config(compose(["experiment=standard", f"pde={name}", f"dtype={dtype}",
                                     "adapt.compile=false", "adapt.eval_stride=1"]))
            rc = replace(rc, adapt=replace(rc.adapt, lr=STANDARD_LR[name]))
            if variant != "adam":
                rc = replace(rc, adapt=method_settings("scratch_lbfgs").adapt_settings(
                    rc.adapt))
            val = [t for t in generate_tasks(rc.pde, rc.tasks) if t.split == "val"]
            for task in val[:args.tasks]:
                r = solve_task(rc, task, initialiser(rc), strict=False)
                steps = np.array([x["step"] for x in r.records])
                mid = r.records[int(np.searchsorted(steps, rc.adapt.steps))]
                end = r.records[-1]
                done = r.lbfgs_iterations if rc.adapt.lbfgs_steps else None
                print(f"{name:8s} {task.index:4d} {variant:8s} {done or '-':>9} "
                      f"{mid['loss']:10.3e} {end['loss']:10.3e} {mid['u_rel_l2']:8.4f} "
                      f"{end['u_rel_l2']:8.4f} {np.max(end['coef_rel_err']):8.4f} "
                      f"{r.wall_time:6.1f}")
                finals.setdefault(variant, []).append((end["u_rel_l2"], r.wall_time))
        f32, f64 = np.array(finals["float32"]), np.array(finals["float64"])
        print(f"{name}: float64/float32 median final u_rel_l2 "
              f"{np.median(f64[:, 0]) / np.median(f32[:, 0]):.2f}, time "
              f"{np.median(f64[:, 1]) / np.median(f32[:, 1]):.2f}")
if __name__ == "__main__":
    main()
