"""One L-BFGS iteration, eager against compiled (``adapt.compile``), side by side.

An L-BFGS phase of at least ``metapinn.adapt.LBFGS_COMPILE_FROM`` iterations takes its
loss and gradient from one ``torch.compile``d function when ``adapt.compile`` is on (the
default). This script runs the same L-BFGS phase both ways, alternating, ``--repeats``
times each, and prints the median time per iteration (``wall_time`` / iterations made; the
compile runs before the timed iterations and is reported apart), the ratio, the compile
time of the first call, and the number of iterations from which compiling pays.

Set-ups:

* ``shock``: ``metapinn identify``'s case in ``benchmarks/burgers_shock.py``: the Burgers
  shock data (ν = 0.01/π, 2,000 observations at 1 % noise, draw 0), the 50×4 network in
  float64, the residual at the observation points;
* ``quick``: the ``scratch_lbfgs`` baseline of ``quick`` (Burgers task 0, 32×3, 1,000
  collocation points, float32).

Each phase starts from scratch's initialisation without Adam steps (``adapt.steps=0``), so
only L-BFGS is timed.

Usage: python benchmarks/lbfgs_time.py [--iterations 600] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from metapinn.config import compose, run_config
from metapinn.evaluate import initialiser, solve_task
from metapinn.pdes.burgers import SHOCK_NU, shock_observations
from metapinn.tasks import Task, make_task


def setups(iterations: int):
    """(name, overrides, task, collocation) of each set-up."""
    common = ["pde=burgers", "adapt.steps=0", f"adapt.lbfgs_steps={iterations}",
              "adapt.dense_log=false", f"adapt.log_every={iterations}"]
    pts, vals = shock_observations(2000, 0.01, seed=0)
    shock = Task("burgers", 0, "shock", np.array([SHOCK_NU]), np.zeros((0, 0)), pts, vals)
    rc = run_config(compose(["experiment=quick", "pde=burgers"]))
    return [
        ("shock", [*common, "dtype=float64", "model.hidden=[50,50,50,50]"], shock,
         "observations"),
        ("quick", [*common, "experiment=quick", "dtype=float32"],
         make_task(rc.pde, 0, rc.tasks), "random"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"L-BFGS, {args.iterations} iterations per phase, {args.repeats} repeats, "
          f"{args.threads} thread(s)")
    print(f"{'set-up':6s} {'eager ms/it':>11s} {'compiled ms/it':>14s} {'ratio':>6s} "
          f"{'compile s':>9s} {'pays from':>9s}")
    for name, overrides, task, collocation in setups(args.iterations):
        times: dict[bool, list[float]] = {False: [], True: []}
        compile_s = []
        for _ in range(args.repeats):
            for compiled in (False, True):
                rc = run_config(compose([*overrides, f"adapt.compile={str(compiled).lower()}"]))
                r = solve_task(rc, task, initialiser(rc), collocation=collocation,
                               strict=False)
                times[compiled].append(1e3 * r.wall_time / max(r.lbfgs_iterations, 1))
                if compiled:
                    compile_s.append(r.compile_time)
        eager, comp = statistics.median(times[False]), statistics.median(times[True])
        first = compile_s[0]
        pays = f"{1e3 * first / (eager - comp):9.0f}" if eager > comp else f"{'never':>9s}"
        print(f"{name:6s} {eager:11.2f} {comp:14.2f} {comp / eager:6.2f} {first:9.1f} {pays}",
              flush=True)


if __name__ == "__main__":
    main()
