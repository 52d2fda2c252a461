"""Milliseconds per training step of the Burgers inverse PINN: metapinn vs DeepXDE 1.15.

Setup (identical on both sides)
    u_t + u u_x − ν u_xx = 0 on x ∈ [−1, 1], t ∈ [0, 1] with unknown ν, parametrised as
    log ν (metapinn's ``params["coef"]``; a ``dde.Variable`` exp'ed inside the residual on
    the DeepXDE side). Task 0 of the default ``pde=burgers`` configuration: the same N
    collocation points (``task_tensors(...)["colloc"]``, given to DeepXDE as ``anchors`` with
    no points of its own), the same 200 boundary/initial points and values and the same 200
    noisy observations (both ``dde.icbc.PointSetBC``). Network 2→50→50→50→50→1 tanh,
    Glorot-normal; the DeepXDE network gets metapinn's initial weights and, through
    ``apply_feature_transform``, metapinn's affine map of the inputs to [−1, 1], so both sides
    compute the same function: their initial loss and gradients are checked to agree before
    timing. Float32, loss weights 1, MSE terms, Adam with lr 1e-3 and PyTorch's defaults
    β = (0.9, 0.999), ε = 1e-8, and the same number of torch threads (``--threads``).

What is timed
    Training steps only (loss, gradients w.r.t. network and log ν, Adam update) after a
    warm-up: the median over ``--repeats`` blocks of ``--steps`` steps. Inside each block the
    variants take turns, so a change in machine load hits all of them alike.

    * ``deepxde``: the per-iteration body of ``Model._train_sgd`` (``train_next_batch``,
      ``_train_step``, the callback hooks), called directly. ``Model.train`` also evaluates
      the train *and* test losses once at its start and once at its end (``_test``; with
      ``display_every`` beyond the run, never in between); calling the body leaves those two
      evaluations out instead of spreading them over the steps.
    * ``metapinn``: :func:`metapinn.adapt.adapt` with ``adapt.compile=false`` (eager, Taylor-mode
      derivatives of :func:`metapinn.nets.mlp_derivatives`, functional Adam) without an
      evaluator: its ``wall_time`` / steps.
    * ``compiled_step``: the shipped default ``adapt.compile=true``: the same ``adapt``, each
      step (loss, gradient, Adam update) one ``torch.compile``d function. Its loss and
      gradients at the initial parameters, and its parameters after 3 steps, are checked
      against the eager path's before timing.

    Other formulations that were measured while choosing what to ship (nested autograd,
    a rearranged Taylor mode, the whole step compiled, chunked compiled losses) are in the
    git history: see ``benchmarks/README.md``.

Floor
    The matmuls of one Taylor-mode step (forward: the value stream through the first layer,
    then K stacked streams through every further layer, K = 1 value + first-order +
    second-order streams + the operator's stream as the loss calls ``mlp_derivatives``
    (Burgers: u, u_x and u_t − ν u_xx, K = 3); the plain forward pass of the boundary
    and observation points; backward: every matmul's weight gradient, and its input gradient
    except in the first layer) run back to back as bare ``torch.mm`` of the same shapes and
    layouts. ``× floor`` is a variant's time over that one. The analytic matmul FLOPs are
    checked against ``torch.profiler``'s count of one step, which also gives DeepXDE's.

Not comparable / caveats
    DeepXDE evaluates the network's input derivatives (and the residual) at *all* its
    training points, boundary and observation points included (N + 400), and keeps only the
    collocation part of the residual; metapinn differentiates at the N collocation points
    only. That is how DeepXDE works, so it stays in its time (its matmul FLOPs are printed).
    The input map costs DeepXDE two element-wise ops on an (N, 2) tensor per pass. Compile
    times are the wall time of a variant's first call (tracing, Inductor's C++ build, one
    step); Inductor caches kernels on disk (``/tmp/torchinductor_$USER``), so later runs
    compile faster. With more threads than idle cores, OpenMP threads wait for each other and
    every time inflates erratically: read the load average printed with the results.

Usage
    python benchmarks/step_time.py [--sizes 2000 10000] [--steps N] [--threads T] [--quick]
    (the DeepXDE anchor needs ``pip install -e ".[bench]"``; without it, it is skipped with a
    message and the ratios are left out)

Writes ``benchmarks/results/step_time.{nc,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch._dynamo.utils import counters
from torch.profiler import profile

from metapinn.adapt import AdaptSettings, Optimizer, adapt
from metapinn.adapt import compiled_step as metapinn_compiled_step
from metapinn.config import compose, run_config
from metapinn.loss import loss_parts
from metapinn.ncio import write_netcdf
from metapinn.nets import Params, _normalise, parse_derivative, scratch_params
from metapinn.pdes.base import PDEFamily
from metapinn.settings import LossWeights
from metapinn.tasks import make_task, task_tensors

RESULTS = Path(__file__).resolve().parent / "results"
LR = 1e-3
LOSS_RTOL = 1e-5  # |Δloss| / loss against the eager library (float32)
GRAD_RTOL = 1e-4  # max |Δg| / max |g| per tensor (float32, other summation orders)


# ----- the problem -----------------------------------------------------------------------
@dataclass
class Problem:
    """One size of the benchmark: the task's tensors and the scratch initialisation."""

    pde: PDEFamily
    data: dict[str, torch.Tensor]
    params0: Params
    weights: LossWeights
    widths: tuple[int, ...]

    @property
    def n(self) -> int:
        return self.data["colloc"].shape[0]

    def as_dict(self, tensors) -> Params:
        return dict(zip(self.params0, tensors, strict=True))

    def loss_fn(self, params: Params) -> dict[str, torch.Tensor]:
        """The library's loss, as ``solve_task`` hands it to ``adapt``."""
        return loss_parts(params, self.data, self.pde, self.weights)


def make_problems(sizes: list[int]) -> list[Problem]:
    rc = run_config(compose(["pde=burgers"]))
    task = make_task(rc.pde, 0, rc.tasks)
    return [Problem(rc.pde, task_tensors(rc.pde, task, n, rc.n_boundary, rc.seed, torch.float32),
                    scratch_params(rc, rc.seed), rc.weights, rc.widths) for n in sizes]


def reference(prob: Problem) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss and gradients of the eager library at the initial parameters."""
    cur = [p.detach().clone().requires_grad_(True) for p in prob.params0.values()]
    total = prob.loss_fn(prob.as_dict(cur))["total"]
    return total.detach(), list(torch.autograd.grad(total, cur))


def discrepancy(loss, grads, ref) -> tuple[float, float]:
    """(|Δloss| / |loss|, max over tensors of max |Δg| / max |g|) against ``reference``."""
    ref_loss, ref_grads = ref
    dl = abs(float(loss) - float(ref_loss)) / abs(float(ref_loss))
    dg = max(float((g.reshape(r.shape) - r).abs().max() / r.abs().max().clamp_min(1e-30))
             for g, r in zip(grads, ref_grads, strict=True))
    return dl, dg


# ----- how steps are run -----------------------------------------------------------------
@dataclass
class Variant:
    """A way of running training steps: ``run(steps)`` → seconds per step."""

    name: str
    description: str
    run: Callable[[int], float]
    loss_err: float = math.nan
    grad_err: float = math.nan
    compile_s: float = math.nan
    update_err: float = math.nan  # compiled_step: params after 3 steps vs eager, in lr
    times: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        good = self.loss_err <= LOSS_RTOL and self.grad_err <= GRAD_RTOL
        return good and (math.isnan(self.update_err) or self.update_err <= 1e-2)

    @property
    def ms(self) -> float:
        return 1e3 * statistics.median(self.times) if self.times else math.nan

    @property
    def ms_min(self) -> float:
        return 1e3 * min(self.times) if self.times else math.nan

    @property
    def ms_max(self) -> float:
        return 1e3 * max(self.times) if self.times else math.nan


def settings(steps: int, compile: bool = False) -> AdaptSettings:
    return AdaptSettings(steps=steps, lr=LR, lr_decay=1.0, log_every=steps, coef_lr_factor=1.0,
                         compile=compile)


def adapt_runner(prob: Problem, loss_fn, compile: bool = False) -> Callable[[int], float]:
    """The shipped loop: ``adapt`` without evaluator; its ``wall_time`` covers steps only."""
    def run(steps: int) -> float:
        result = adapt(prob.params0, loss_fn, settings(steps, compile), progress=False)
        return result.wall_time / steps
    return run


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


# ----- the variants ----------------------------------------------------------------------
def deepxde(prob: Problem, ref) -> Variant:
    """DeepXDE 1.15, PyTorch backend: the same problem, initial weights and input map."""
    if os.environ.setdefault("DDE_BACKEND", "pytorch") != "pytorch":
        raise SystemExit(f"DDE_BACKEND={os.environ['DDE_BACKEND']}; this benchmark needs pytorch")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import deepxde as dde

        dde.config.set_default_float("float32")
    data, pde = prob.data, prob.pde
    log_nu = dde.Variable(float(prob.params0["coef"][0]))

    def residual(x, y):
        u_x = dde.grad.jacobian(y, x, i=0, j=0)
        u_t = dde.grad.jacobian(y, x, i=0, j=1)
        u_xx = dde.grad.hessian(y, x, i=0, j=0)
        return u_t + y * u_x - torch.exp(log_nu) * u_xx

    def column(t):
        return t.numpy()[:, None]

    geom = dde.geometry.GeometryXTime(dde.geometry.Interval(*pde.bounds[0]),
                                      dde.geometry.TimeDomain(*pde.bounds[1]))
    conditions = [dde.icbc.PointSetBC(data["bc_points"].numpy(), column(data["bc_values"])),
                  dde.icbc.PointSetBC(data["obs_points"].numpy(), column(data["obs_values"]))]
    pinn_data = dde.data.TimePDE(geom, residual, conditions, num_domain=0, num_boundary=0,
                                 num_initial=0, anchors=data["colloc"].numpy())
    n_points = prob.n + len(data["bc_points"]) + len(data["obs_points"])
    if pinn_data.train_x.shape[0] != n_points:
        raise RuntimeError(f"DeepXDE has {pinn_data.train_x.shape[0]} training points, "
                           f"expected {n_points}")
    net = dde.nn.FNN(list(prob.widths), "tanh", "Glorot normal")
    _, scale = _normalise(torch.zeros(1, 2), pde.bounds)
    lo = torch.tensor([b[0] for b in pde.bounds])
    net.apply_feature_transform(lambda x: (x - lo) * scale - 1.0)
    with torch.no_grad():  # metapinn's initial weights
        for i, layer in enumerate(net.linears):
            layer.weight.copy_(prob.params0[f"w{i}"])
            layer.bias.copy_(prob.params0[f"b{i}"])
    model = dde.Model(pinn_data, net)
    with contextlib.redirect_stdout(io.StringIO()):
        model.compile("adam", lr=LR, external_trainable_variables=[log_nu])

    # loss and gradients at the initial weights, as DeepXDE's train step computes them
    variables = [p for layer in net.linears for p in (layer.weight, layer.bias)] + [log_nu]
    losses = model.outputs_losses_train(pinn_data.train_x, pinn_data.train_y,
                                        pinn_data.train_aux_vars)[1]
    grads = torch.autograd.grad(losses.sum(), variables)

    with contextlib.redirect_stdout(io.StringIO()):  # sets up train_state and callbacks
        model.train(iterations=1, display_every=10**9, verbose=0)

    def run(steps: int) -> float:
        state, callbacks = model.train_state, model.callbacks
        t0 = time.perf_counter()
        for _ in range(steps):  # Model._train_sgd's body, without the display-time _test
            callbacks.on_epoch_begin()
            callbacks.on_batch_begin()
            state.set_data_train(*model.data.train_next_batch(model.batch_size))
            model._train_step(state.X_train, state.y_train, state.train_aux_vars)
            state.iteration += 1
            state.step += 1
            callbacks.on_batch_end()
            callbacks.on_epoch_end()
        return (time.perf_counter() - t0) / steps

    v = Variant("deepxde", f"DeepXDE {dde.__version__}: Model._train_sgd step body", run)
    v.loss_err, v.grad_err = discrepancy(losses.sum().detach(), grads, ref)
    return v


def shipped(prob: Problem, ref) -> Variant:
    """metapinn as shipped: eager ``adapt`` over ``loss_parts`` (Taylor mode)."""
    v = Variant("metapinn", "shipped: eager adapt, Taylor mode", adapt_runner(prob, prob.loss_fn))
    v.loss_err, v.grad_err = 0.0, 0.0  # it is the reference
    return v


def compiled_step(prob: Problem, ref) -> Variant:
    """metapinn as shipped by default (``adapt.compile=true``): ``adapt`` runs each step as
    one ``torch.compile``d function (loss, gradient and Adam update; ``metapinn.adapt.
    compiled_step``). Timed after its compile, which ``adapt`` does before its clock starts
    and reports as ``compile_time``.

    The check: the same compiled function with plain SGD at step size 1 returns p − g, so
    its gradient and loss at the initial parameters are compared with the eager library's;
    then 3 steps of ``adapt(compile=True)`` are compared with 3 eager steps (``update_err``,
    in units of the learning rate).
    """
    names = list(prob.params0)
    sgd = metapinn_compiled_step(prob.loss_fn, Optimizer("sgd"), names, [1.0] * len(names))
    p0 = [p.detach().clone() for p in prob.params0.values()]
    one = torch.tensor(1.0, dtype=p0[0].dtype)
    seconds, (new, _, parts) = timed(sgd, p0, (), one, one)
    v = Variant("compiled_step", "shipped default: adapt.compile=true (loss + gradient + Adam "
                "in one torch.compile graph)", adapt_runner(prob, prob.loss_fn, compile=True),
                compile_s=seconds)
    v.loss_err = discrepancy(parts["total"].detach(), ref[1], ref)[0]
    # g = p − (p − g): the subtraction in the parameters' precision loses up to 2ε·|p| of g,
    # so what counts is each tensor's error beyond that, relative to its max |g|
    eps = torch.finfo(p0[0].dtype).eps
    v.grad_err = max(float((((p - q) - r).abs().max() - 2 * eps * p.abs().max()).clamp_min(0)
                           / r.abs().max()) for p, q, r in zip(p0, new, ref[1], strict=True))
    eager = adapt(prob.params0, prob.loss_fn, settings(3), progress=False).params
    ours = adapt(prob.params0, prob.loss_fn, settings(3, compile=True), progress=False).params
    v.update_err = max(float((ours[k] - eager[k]).abs().max()) for k in eager) / LR
    return v


# ----- the matmul floor ------------------------------------------------------------------
def n_streams(pde: PDEFamily) -> int:
    """K of ``mlp_derivatives`` as the loss calls it: the value, the distinct first-order
    and second-order streams of the derivatives outside the family's operator, the
    first-order streams its second-order terms need, and the operator's own stream."""
    theta = torch.ones(len(pde.coefficients))
    op = pde.operator(theta) or {}
    multi = [parse_derivative(name, pde.inputs) for name in pde.derivatives if name not in op]
    op_multi = [parse_derivative(name, pde.inputs) for name in op]
    firsts = ({m[0] for m in multi if len(m) == 1}
              | {i for m in (*multi, *op_multi) if len(m) == 2 for i in m})
    return 1 + len(firsts) + len({m for m in multi if len(m) == 2}) + bool(op)


def step_matmuls(prob: Problem) -> list[tuple[str, int, int, int]]:
    """Every matmul of one Taylor-mode step as (kind, rows, inner, cols):
    ``fwd`` X @ Wᵀ, ``dX`` G @ W, ``dW`` Gᵀ @ X."""
    k = n_streams(prob.pde)
    n_plain = sum(len(prob.data[key]) for key in ("bc_points", "pair_a", "pair_b", "obs_points"))
    out = []
    for first_rows, rows in ((prob.n, k * prob.n), (n_plain, n_plain)):
        for i, (fan_in, fan_out) in enumerate(zip(prob.widths[:-1], prob.widths[1:],
                                                  strict=True)):
            m = first_rows if i == 0 else rows  # first layer: the value stream only
            out += [("fwd", m, fan_in, fan_out), ("dW", fan_out, m, fan_in)]
            if i > 0:  # the network inputs need no gradient
                out.append(("dX", m, fan_out, fan_in))
    return out


def matmul_floor(prob: Problem, repeats: int = 7) -> tuple[float, float]:
    """(GFLOP of one step's matmuls, seconds to run them as bare ``torch.mm``)."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    calls = []
    for kind, m, k, n in step_matmuls(prob):
        if kind == "fwd":  # X @ Wᵀ
            a, b = randn(m, k), randn(n, k).T
        elif kind == "dX":  # G @ W
            a, b = randn(m, k), randn(k, n)
        else:  # Gᵀ @ X
            a, b = randn(k, m).T, randn(k, n)
        calls.append((a, b, torch.empty(m, n)))

    def once():
        for a, b, c in calls:
            torch.mm(a, b, out=c)

    for _ in range(3):
        once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            once()
        times.append((time.perf_counter() - t0) / 10)
    return sum(2 * m * k * n for _, m, k, n in step_matmuls(prob)) / 1e9, statistics.median(times)


def counted_gflop(fn) -> float:
    """Matmul GFLOP that ``torch.profiler`` counts in one call of ``fn``."""
    with silent_stderr(), profile(with_flops=True) as prof:  # Kineto prints start/stop lines
        fn()
    return sum(e.flops for e in prof.key_averages() if "mm" in e.key and e.flops) / 1e9


@contextlib.contextmanager
def silent_stderr():
    """Send file descriptor 2 (C++ output included) to /dev/null for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ----- running ---------------------------------------------------------------------------
VARIANTS: dict[str, Callable] = {
    "deepxde": deepxde,
    "metapinn": shipped,
    "compiled_step": compiled_step,
}
DEEPXDE_MISSING = ("deepxde: not installed, so the DeepXDE anchor is skipped (no ratios); "
                   'pip install -e ".[bench]" installs DeepXDE 1.15')


def build_variants(prob: Problem, names: list[str], log) -> list[Variant]:
    torch._dynamo.reset()  # static shapes per size, and compile times per size
    ref = reference(prob)
    variants = []
    for name in names:
        t0 = time.perf_counter()
        try:
            v = VARIANTS[name](prob, ref)
        except Exception as e:  # report it and go on with the others
            log(f"  {name}: FAILED: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
            continue
        extra = "" if math.isnan(v.update_err) else \
            f", params after 3 steps vs eager adapt {v.update_err:.0e} lr"
        log(f"  {name}: ready in {time.perf_counter() - t0:.1f} s; vs eager library: loss "
            f"{v.loss_err:.0e}, grads {v.grad_err:.0e}{extra}{'' if v.ok else '  MISMATCH'}")
        variants.append(v)
    return variants


def time_variants(variants: list[Variant], steps: int, warmup: int, repeats: int, log):
    for v in variants:
        v.run(warmup)
    graphs = dict(counters["stats"])
    for _ in range(repeats):
        for v in variants:  # interleaved: load changes hit every variant alike
            v.times.append(v.run(steps))
    if dict(counters["stats"]) != graphs:
        log("  WARNING: torch.compile recompiled while timing")


def flop_check(prob: Problem, variants: list[Variant]) -> dict[str, float]:
    """Profiled matmul GFLOP of one step: metapinn's (eager loss + gradients) and DeepXDE's."""
    out = {"metapinn": counted_gflop(lambda: reference(prob))}
    dx = next((v for v in variants if v.name == "deepxde"), None)
    out["deepxde"] = counted_gflop(lambda: dx.run(1)) if dx else math.nan
    return out


# ----- reporting -------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), cpu)
    return {"cpu": cpu, "nproc": str(os.cpu_count()), "torch": torch.__version__,
            "python": platform.python_version()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _f(x: float, spec: str) -> str:
    return "–" if not math.isfinite(x) else format(x, spec)


def tables(rows: dict[int, list[Variant]], floors, flops) -> str:
    """The summary, the full table and the floor as Markdown."""
    def ms_of(vs, name):
        return next((v.ms for v in vs if v.name == name), math.nan)

    lines = ["| N | DeepXDE ms/step | metapinn eager ms/step | ratio | metapinn default "
             "(compiled step) ms/step | ratio | floor ms |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, vs in rows.items():
        dx, ship, comp = (ms_of(vs, name) for name in ("deepxde", "metapinn", "compiled_step"))
        lines.append(f"| {n} | {_f(dx, '.1f')} | {_f(ship, '.1f')} | {_f(ship / dx, '.2f')} | "
                     f"{_f(comp, '.1f')} | {_f(comp / dx, '.2f')} | "
                     f"{floors[n][1] * 1e3:.1f} |")
    lines += ["", "| N | variant | ms/step | min–max | ÷ DeepXDE | × floor | compile s | check "
              "(Δloss, Δgrad) |", "|---:|---|---:|---:|---:|---:|---:|---|"]
    for n, vs in rows.items():
        dx, floor = ms_of(vs, "deepxde"), floors[n][1] * 1e3
        for v in vs:
            check = "reference" if v.name == "metapinn" else \
                f"{'ok' if v.ok else 'MISMATCH'} ({v.loss_err:.0e}, {v.grad_err:.0e})"
            spread = f"{v.ms_min:.1f}–{v.ms_max:.1f}"
            lines.append(f"| {n} | {v.name} | {v.ms:.1f} | {spread} | {_f(v.ms / dx, '.2f')} | "
                         f"{v.ms / floor:.1f} | {_f(v.compile_s, '.1f')} | {check} |")
    lines += ["", "Matmul floor of one Taylor-mode step (every matmul of forward + backward "
              "as bare torch.mm of the same shapes) and the matmul work that "
              "torch.profiler counts in one step:",
              "", "| N | GFLOP/step (analytic) | profiled: metapinn | profiled: DeepXDE | "
              "floor ms | achieved GFLOP/s |", "|---:|---:|---:|---:|---:|---:|"]
    for n, (gflop, sec) in floors.items():
        lines.append(f"| {n} | {gflop:.3f} | {flops[n]['metapinn']:.3f} | "
                     f"{_f(flops[n]['deepxde'], '.3f')} | {sec * 1e3:.2f} | {gflop / sec:.0f} |")
    return "\n".join(lines)


def write_results(rows: dict[int, list[Variant]], floors, flops, info, text: str, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    sizes = list(rows)
    names = list(dict.fromkeys(v.name for vs in rows.values() for v in vs))
    descriptions = {v.name: v.description for vs in rows.values() for v in vs}

    def grid(attr):
        a = np.full((len(sizes), len(names)), np.nan)
        for i, n in enumerate(sizes):
            for v in rows[n]:
                a[i, names.index(v.name)] = getattr(v, attr)
        return a

    ms = grid("ms")
    lo, hi = grid("ms_min"), grid("ms_max")
    dx = ms[:, names.index("deepxde")] if "deepxde" in names else np.full(len(sizes), np.nan)
    floor_ms = np.array([floors[n][1] * 1e3 for n in sizes])
    dims = ("size", "variant")

    def var(dims_, values, long_name, units):
        return dims_, values, {"long_name": long_name, "units": units}

    ds = xr.Dataset(
        {
            "ms_per_step": var(dims, ms, "median wall time per training step", "ms"),
            "ms_min": var(dims, lo, "fastest block's wall time per training step", "ms"),
            "ms_max": var(dims, hi, "slowest block's wall time per training step", "ms"),
            "ratio_to_deepxde": var(dims, ms / dx[:, None], "time per step relative to DeepXDE",
                                    "1"),
            "times_floor": var(dims, ms / floor_ms[:, None],
                               "time per step relative to the matmul floor", "1"),
            "compile_time": var(dims, grid("compile_s"), "first-call (compile) wall time", "s"),
            "loss_rel_err": var(dims, grid("loss_err"),
                                "relative loss difference to the eager library", "1"),
            "grad_rel_err": var(dims, grid("grad_err"),
                                "max relative gradient difference to the eager library", "1"),
            "floor_ms": var("size", floor_ms, "matmul floor of one Taylor-mode step", "ms"),
            "step_gflop": var("size", np.array([floors[n][0] for n in sizes]),
                              "matmul work of one Taylor-mode step (analytic)", "GFLOP"),
            "deepxde_gflop": var("size", np.array([flops[n]["deepxde"] for n in sizes]),
                                 "matmul work of one DeepXDE step (torch.profiler)", "GFLOP"),
        },
        coords={"size": ("size", np.array(sizes), {"long_name": "collocation points"}),
                "variant": ("variant", np.array(names, dtype=object),
                            {"long_name": "implementation"}),
                "description": ("variant", np.array([descriptions[n] for n in names],
                                                    dtype=object),
                                {"long_name": "what the variant runs"})},
    )
    ds.attrs.update(info)
    write_netcdf(ds, out / "step_time.nc", title="Burgers inverse PINN: ms per training step",
                 history="benchmarks/step_time.py " + " ".join(sys.argv[1:]))
    (out / "step_time.md").write_text(
        f"# Step time, Burgers inverse PINN\n\n{info['date']}; {info['nproc']} CPUs "
        f"({info['cpu']}); torch {info['torch']}, DeepXDE {info['deepxde']}; "
        f"{info['threads']} threads; load average {info['load_before']} (start), "
        f"{info['load_after']} (end).\n\n{text}\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000],
                    help="numbers of collocation points (default 2000 10000)")
    ap.add_argument("--steps", type=int,
                    help="timed steps per block (default 100 for N ≤ 4000, else 50)")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks per variant")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch threads for every variant (default: all cores)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--quick", action="store_true", help="two steps, one block (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    warmup, repeats = (1, 1) if args.quick else (5, args.repeats)
    names = list(dict.fromkeys(args.variants))
    if "deepxde" in names and importlib.util.find_spec("deepxde") is None:
        log(DEEPXDE_MISSING)
        names.remove("deepxde")
    load_before, start = load(), time.perf_counter()
    rows, floors, flops = {}, {}, {}
    for prob in make_problems(args.sizes):
        steps = 2 if args.quick else (args.steps or (100 if prob.n <= 4000 else 50))
        log(f"N = {prob.n}: preparing and checking variants")
        variants = build_variants(prob, names, log)
        log(f"N = {prob.n}: timing {repeats} × {steps} steps per variant")
        time_variants(variants, steps, warmup, repeats, log)
        floors[prob.n] = matmul_floor(prob)
        flops[prob.n] = flop_check(prob, variants)
        rows[prob.n] = variants

    dde = sys.modules.get("deepxde")
    info = {**machine(), "deepxde": getattr(dde, "__version__", "not run"),
            "threads": str(args.threads),
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "load_before": load_before, "load_after": load(), "quick": str(args.quick)}
    text = tables(rows, floors, flops)
    print(text)
    print(f"\n{info['date']}; {info['nproc']} CPUs ({info['cpu']}); torch {info['torch']}, "
          f"DeepXDE {info['deepxde']}; {args.threads} threads; load average "
          f"{info['load_before']} → {info['load_after']}; {time.perf_counter() - start:.0f} s")
    cores = os.cpu_count() or 1  # the run itself adds about `threads` to the load average
    if float(load_before.split()[0]) > cores - args.threads + 0.5 \
            or os.getloadavg()[0] > cores + 0.5:
        log(f"WARNING: load average {load_before} → {load()} with {args.threads} of {cores} "
            "cores in use: other processes competed for the cores; the times are unreliable")
    write_results(rows, floors, flops, info, text, args.out)


if __name__ == "__main__":
    main()
