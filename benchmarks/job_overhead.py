"""Where the fixed time of a pipeline job goes, and when the compiled step pays for it.

Every torch job of the pipeline (``adapt``, ``meta_train``, ``tune_scratch_lr`` …) is a
fresh Python process: it imports torch and metapinn, and where it uses the compiled step
(``adapt.compile``, the default) it imports TorchDynamo/Inductor and traces the step once
(Inductor's compiled kernels come from the run's on-disk cache, but Dynamo's trace of the
Python step does not). This script times those phases in fresh processes, in order:

* ``python``: the interpreter alone (``python -c pass``);
* ``import torch``;
* ``import metapinn``: the modules an ``adapt-tasks`` job imports beyond torch (config,
  evaluation, NetCDF I/O);
* ``import compiler``: ``torch._dynamo`` and Inductor's ``compile_fx``, imported by the
  first ``torch.compile`` (``metapinn.adapt.compiled_step``);
* ``first call``: the compiled step's first call (Dynamo trace, AOTAutograd, Inductor's
  kernels from the warm cache), what a job logs as "training step compiled in";
* the time per step, compiled and eager, over ``--steps`` steps of one task (the quick
  network, the ``--pde`` family, one thread).

From those it prints the break-even: how many steps a process must run before the
compiled step's fixed cost (``import compiler`` + ``first call``) is repaid by its faster
steps. The cache is warmed by one untimed process first; each timed phase is the median
over ``--repeats`` processes run one after another (machine load is printed: with more
busy threads than cores every number inflates).

Usage
    python benchmarks/job_overhead.py [--pde burgers] [--steps 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
from dataclasses import replace
t = {"start": time.perf_counter()}
import torch
torch.set_num_threads(1)
t["torch"] = time.perf_counter()
from metapinn.adapt import adapt
from metapinn.config import compose, run_config
from metapinn.evaluate import solve_tasks  # noqa: F401  (what an adapt-tasks job imports)
from metapinn.loss import loss_parts
from metapinn.nets import scratch_params
from metapinn.tasks import make_task, task_tensors
t["metapinn"] = time.perf_counter()
import torch._dynamo  # noqa: F401
import torch._inductor.compile_fx  # noqa: F401
t["compiler"] = time.perf_counter()
pde_name, steps = sys.argv[1], int(sys.argv[2])
rc = run_config(compose([f"pde={pde_name}", "experiment=quick"]))
task = make_task(rc.pde, 0, rc.tasks)
data = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, rc.seed, rc.dtype)
params = scratch_params(rc, rc.seed)
loss = lambda p: loss_parts(p, data, rc.pde, rc.weights)
out = {}
for compiled in (True, False):
    s = replace(rc.adapt, steps=steps, lbfgs_steps=0, compile=compiled)
    r = adapt(params, loss, s, record_log=False, progress=False)
    # an untimed run's first compiled step runs inside its compile (in compile_time)
    timed = steps - 1 if compiled else steps
    out["compiled" if compiled else "eager"] = {"first_call": r.compile_time,
                                                "ms_per_step": 1e3 * r.wall_time / timed}
print(json.dumps({"t": t, "out": out}))
"""


def child(pde: str, steps: int, cache: str) -> dict[str, float]:
    """One fresh process (after a bare ``python -c pass``, timed too): its phase times."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
    bare = time.perf_counter() - t0
    res = subprocess.run([sys.executable, "-c", CHILD, pde, str(steps)], check=True,
                         env=env, capture_output=True, text=True)
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    t = rec["t"]
    phases = {"python": bare,
              "import torch": t["torch"] - t["start"],
              "import metapinn": t["metapinn"] - t["torch"],
              "import compiler": t["compiler"] - t["metapinn"],
              "first call": rec["out"]["compiled"]["first_call"],
              "compiled ms/step": rec["out"]["compiled"]["ms_per_step"],
              "eager ms/step": rec["out"]["eager"]["ms_per_step"]}
    return phases


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pde", default="burgers")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.steps < 10 or args.repeats < 1:
        ap.error("--steps must be >= 10 and --repeats >= 1")
    with tempfile.TemporaryDirectory() as cache:
        print(f"warming the Inductor cache ({args.pde}) …", flush=True)
        child(args.pde, 10, cache)
        runs = [child(args.pde, args.steps, cache) for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"\n{args.pde}, quick network, one thread, {args.steps} steps, median of "
          f"{args.repeats} processes; load average {os.getloadavg()[0]:.2f}\n")
    print("| phase | seconds |\n|---|---:|")
    for k in ("python", "import torch", "import metapinn", "import compiler", "first call"):
        print(f"| {k} | {med[k]:.2f} |")
    fixed = med["import compiler"] + med["first call"]
    gain = (med["eager ms/step"] - med["compiled ms/step"]) / 1e3
    print(f"\ncompiled step {med['compiled ms/step']:.2f} ms, eager {med['eager ms/step']:.2f} ms "
          f"({med['compiled ms/step'] / med['eager ms/step']:.2f}×)")
    print(f"compiled step's fixed cost (import compiler + first call): {fixed:.1f} s")
    if gain > 0:
        print(f"break-even: {fixed / gain:,.0f} steps per process")
    else:
        print("break-even: never (the compiled step is not faster here)")
    start = med["python"] + med["import torch"] + med["import metapinn"]
    print(f"start-up before any work (python + imports): {start:.1f} s")


if __name__ == "__main__":
    main()
