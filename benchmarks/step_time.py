"""Milliseconds per training step of the Burgers inverse PINN: metapinn vs DeepXDE 1.15.

Setup (identical on both sides)
    u_t + u u_x − ν u_xx = 0 on x ∈ [−1, 1], t ∈ [0, 1] with unknown ν, parametrised as
    log ν (metapinn's ``params["coef"]``; a ``dde.Variable`` exp'ed inside the residual on
    the DeepXDE side). Task 0 of the default ``pde=burgers`` configuration: the same
    collocation points (``task_tensors(...)["colloc"]``, N of them, passed to DeepXDE as
    ``anchors`` with no points of its own), the same 200 boundary/initial points and values
    and the same 200 noisy observations (both ``dde.icbc.PointSetBC``). Network
    2→50→50→50→50→1 tanh, Glorot-normal; the DeepXDE network is given metapinn's initial
    weights and, through ``apply_feature_transform``, metapinn's affine map of the inputs to
    [−1, 1], so both sides compute the same function: their initial loss and gradients are
    checked to agree before timing. Float32, loss weights 1, MSE terms, Adam (lr 1e-3, PyTorch
    defaults β = (0.9, 0.999), ε = 1e-8), the same number of torch threads (``--threads``).

What is timed
    Training steps only (loss, gradients w.r.t. network and log ν, Adam update), after a
    warm-up, as the median over ``--repeats`` blocks of ``--steps`` steps; the variants of a
    size are timed in turn inside each block, so a change in machine load hits them alike.

    * ``deepxde``: the per-iteration body of ``Model._train_sgd`` (``train_next_batch``,
      ``_train_step``, the callback hooks), called directly. ``Model.train`` itself also
      evaluates train *and* test losses once at its start and once at its end (``_test``;
      with ``display_every`` larger than the run, never in between); calling the body skips
      those two evaluations instead of amortising them into the step time.
    * ``metapinn``: the shipped path, :func:`metapinn.adapt.adapt` (eager, Taylor-mode
      derivatives, functional Adam) with no evaluator: its ``wall_time`` / steps.
    * Variants with the same maths, for deciding what to ship (each one's loss and gradients
      are checked against the eager library's before it is timed):
      ``compile_loss``: ``adapt`` with ``torch.compile(loss_fn, fullgraph=True)``, the
      backward compiled by AOTAutograd (default mode); ``compile_loss_autotune``: the same
      with ``mode="max-autotune-no-cudagraphs"``; ``compile_step``: one compiled function
      (params, Adam state) → (loss, grads, params, state) built on ``torch.func.grad_and_value``;
      ``compile_chunked`` (only when N > ``--chunk``): ``compile_loss`` evaluated over chunks
      of the collocation points with the gradients accumulated, so each chunk's activations
      stay in cache; ``nested_autograd``: ``adapt`` with input derivatives from nested
      ``torch.autograd.grad`` instead of Taylor mode (what DeepXDE does), eager.

Floor
    The multiply-adds of every matmul of one Taylor-mode step (forward: the value stream
    through the first layer, then K stacked streams per layer, K = 1 value + first-order +
    second-order derivative streams as in :func:`metapinn.nets.mlp_derivatives`; plus the plain
    forward pass of the boundary and observation points; backward: the weight gradient of
    every matmul and the input gradient of all but the first layer), executed back to back as
    bare ``torch`` matmuls of the same shapes and layouts. ``× floor`` = ms per step ÷ that
    time. No variant can beat it without changing the arithmetic.

Not comparable / caveats
    DeepXDE evaluates the derivatives (and the residual) at *all* its training points,
    boundary and observation points included (N + 400), and keeps only the collocation part
    of the residual; metapinn differentiates only at the N collocation points. That is part of
    how DeepXDE works, so it stays in its time. The input map costs DeepXDE two element-wise
    ops on an (N, 2) tensor per pass (negligible). Compile times are the wall time of a
    variant's first call (tracing, Inductor's C++ compilation, one step); Inductor caches
    compiled kernels on disk (``/tmp/torchinductor_$USER``), so a second run compiles faster.

Usage
    python benchmarks/step_time.py [--sizes 2000 10000] [--steps N] [--threads T] [--quick]

Writes ``benchmarks/results/step_time.{nc,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
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

from metapinn.adapt import AdaptSettings, Optimizer, adapt
from metapinn.config import compose, run_config
from metapinn.evaluate import scratch_params
from metapinn.loss import LossWeights, loss_parts
from metapinn.ncio import write_netcdf
from metapinn.nets import Params, mlp, mlp_derivatives, parse_derivative
from metapinn.pdes import PDEFamily
from metapinn.tasks import make_task, task_tensors

RESULTS = Path(__file__).resolve().parent / "results"
LR = 1e-3
GRAD_RTOL = 1e-4  # max |Δg| / max |g| per tensor, float32 (different summation orders)
LOSS_RTOL = 1e-5


# ----- the problem ---------------------------------------------------------------------
@dataclass
class Problem:
    """One size of the benchmark: the task's tensors and the scratch initialisation."""

    pde: PDEFamily
    data: dict[str, torch.Tensor]
    params0: Params
    weights: LossWeights
    widths: tuple[int, ...]

    @property
    def names(self) -> list[str]:
        return list(self.params0)

    @property
    def n(self) -> int:
        return self.data["colloc"].shape[0]

    def as_dict(self, tensors) -> Params:
        return dict(zip(self.names, tensors, strict=True))

    def loss_fn(self, params: Params) -> dict[str, torch.Tensor]:
        return loss_parts(params, self.data, self.pde, self.weights)


def make_problems(sizes: list[int]) -> list[Problem]:
    rc = run_config(compose(["pde=burgers"]))
    task = make_task(rc.pde, 0, rc.tasks)
    out = []
    for n in sizes:
        data = task_tensors(rc.pde, task, n, rc.n_boundary, rc.seed, torch.float32)
        out.append(Problem(rc.pde, data, scratch_params(rc, rc.seed), rc.weights, rc.widths))
    return out


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


# ----- variants --------------------------------------------------------------------------
@dataclass
class Variant:
    """A way of running training steps: ``run(steps)`` → seconds per step."""

    name: str
    description: str
    run: Callable[[int], float]
    loss_err: float = math.nan
    grad_err: float = math.nan
    compile_s: float = math.nan
    update_err: float = math.nan  # compile_step: its Adam update vs adapt's, in units of lr
    times: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.loss_err <= LOSS_RTOL and self.grad_err <= GRAD_RTOL

    @property
    def ms(self) -> float:
        return 1e3 * statistics.median(self.times) if self.times else math.nan


def settings(steps: int) -> AdaptSettings:
    return AdaptSettings(steps=steps, lr=LR, log_every=steps)


def adapt_runner(prob: Problem, loss_fn) -> Callable[[int], float]:
    """The shipped loop: ``adapt`` without evaluator; its ``wall_time`` covers steps only."""
    def run(steps: int) -> float:
        return adapt(prob.params0, loss_fn, settings(steps), progress=False).wall_time / steps
    return run


def adam_loop(prob: Problem, loss_and_grads) -> Callable[[int], float]:
    """``adapt``'s first-order loop for a (params list → loss, grads) function: the same
    functional Adam and per-step timing, without the logging."""
    opt = Optimizer("adam")

    def run(steps: int) -> float:
        cfg = settings(steps)
        cur = [p.detach().clone() for p in prob.params0.values()]
        state = opt.init(cur)
        wall = 0.0
        for step in range(steps):
            t0 = time.perf_counter()
            _, grads = loss_and_grads(cur)
            with torch.no_grad():
                cur, state = opt.update(cur, list(grads), state, cfg.lr_at(step))
            wall += time.perf_counter() - t0
        return wall / steps
    return run


def first_call(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def shipped(prob: Problem, ref) -> Variant:
    """metapinn as shipped: eager ``adapt`` over ``loss_parts`` (Taylor mode)."""
    v = Variant("metapinn", "shipped: eager adapt, Taylor-mode derivatives",
                adapt_runner(prob, prob.loss_fn))
    v.loss_err, v.grad_err = 0.0, 0.0  # it is the reference
    return v


def compile_loss(prob: Problem, ref, mode: str | None = None) -> Variant:
    """``adapt`` with a compiled loss function; AOTAutograd compiles its backward."""
    kwargs = {"mode": mode} if mode else {}
    fn = torch.compile(prob.loss_fn, fullgraph=True, dynamic=False, **kwargs)

    def loss_grads(tensors):
        cur = [p.detach().requires_grad_(True) for p in tensors]
        total = fn(prob.as_dict(cur))["total"]
        return total.detach(), torch.autograd.grad(total, cur)

    seconds, (loss, grads) = first_call(loss_grads, list(prob.params0.values()))
    name = "compile_loss" + ("_autotune" if mode else "")
    v = Variant(name, f"adapt + torch.compile(loss_fn, fullgraph, mode={mode or 'default'})",
                adapt_runner(prob, fn), compile_s=seconds)
    v.loss_err, v.grad_err = discrepancy(loss, grads, ref)
    return v


def compile_step(prob: Problem, ref) -> Variant:
    """One compiled function for the whole step: grad_and_value of the loss + Adam."""
    opt = Optimizer("adam")
    b1, b2 = opt.betas

    def total(tensors):
        return prob.loss_fn(prob.as_dict(tensors))["total"]

    def step(params, m, v, step_size, bias2):
        grads, loss = torch.func.grad_and_value(total)(params)
        m = [b1 * mi + (1 - b1) * g for mi, g in zip(m, grads, strict=True)]
        v = [b2 * vi + (1 - b2) * g * g for vi, g in zip(v, grads, strict=True)]
        params = [p - step_size * mi / (vi.sqrt() / bias2 + opt.eps)
                  for p, mi, vi in zip(params, m, v, strict=True)]
        return loss, grads, params, m, v

    fn = torch.compile(step, fullgraph=True, dynamic=False)

    def scalars(step_index: int, cfg: AdaptSettings):
        t = step_index + 1  # as Optimizer.update: bias corrections of step t
        return (torch.tensor(cfg.lr_at(step_index) / (1 - b1 ** t)),
                torch.tensor(math.sqrt(1 - b2 ** t)))

    def run(steps: int) -> float:
        cfg = settings(steps)
        cur = [p.detach().clone() for p in prob.params0.values()]
        m = [torch.zeros_like(p) for p in cur]
        v = [torch.zeros_like(p) for p in cur]
        wall = 0.0
        for i in range(steps):
            t0 = time.perf_counter()
            _, _, cur, m, v = fn(cur, m, v, *scalars(i, cfg))
            wall += time.perf_counter() - t0
        return wall / steps

    p0 = [p.detach().clone() for p in prob.params0.values()]
    m, v = ([torch.zeros_like(p) for p in p0] for _ in range(2))
    seconds, (loss, grads, *_) = first_call(fn, p0, m, v, *scalars(0, settings(1)))
    var = Variant("compile_step", "torch.compile(grad_and_value(loss) + Adam), fullgraph",
                  run, compile_s=seconds)
    var.loss_err, var.grad_err = discrepancy(loss, grads, ref)
    # the update itself: 3 steps against adapt's functional Adam
    ours = adapt(prob.params0, prob.loss_fn, settings(3), progress=False).params
    cur = p0
    for i in range(3):
        _, _, cur, m, v = fn(cur, m, v, *scalars(i, settings(3)))
    var.update_err = max(float((c - o).abs().max())
                         for c, o in zip(cur, ours.values(), strict=True)) / LR
    return var


def compile_chunked(prob: Problem, ref, chunk: int) -> Variant:
    """Compiled loss with the residual term summed over chunks of ``chunk`` collocation
    points, one backward per chunk, gradients accumulated (the same sum, regrouped)."""
    pde, data, n = prob.pde, prob.data, prob.n

    def residual_sum(tensors, points):
        p = prob.as_dict(tensors)
        d = mlp_derivatives(p, points, pde.bounds, pde.inputs, pde.derivatives)
        r = pde.residual(d, pde.from_param(p["coef"]), points)
        return (r * r).sum()

    def other_terms(tensors):  # boundary + data terms, as in loss_parts
        boundary, obs = plain_terms(prob.as_dict(tensors), data, pde)
        return prob.weights.boundary * boundary + prob.weights.data * obs

    res = torch.compile(residual_sum, fullgraph=True, dynamic=False)
    rest = torch.compile(other_terms, fullgraph=True, dynamic=False)
    chunks = data["colloc"].split(chunk)

    def loss_grads(tensors):
        cur = [p.detach().requires_grad_(True) for p in tensors]
        total = rest(cur)
        grads = list(torch.autograd.grad(total, cur, materialize_grads=True))
        total = total.detach()
        for pts in chunks:
            part = res(cur, pts) * (prob.weights.residual / n)
            torch._foreach_add_(grads, torch.autograd.grad(part, cur))
            total = total + part.detach()
        return total, grads

    seconds, (loss, grads) = first_call(loss_grads, list(prob.params0.values()))
    v = Variant("compile_chunked", f"compile_loss over chunks of {chunk} collocation points, "
                "gradients accumulated", adam_loop(prob, loss_grads), compile_s=seconds)
    v.loss_err, v.grad_err = discrepancy(loss, grads, ref)
    return v


def plain_terms(params: Params, data, pde: PDEFamily):
    """The boundary and data terms of ``loss_parts`` (one plain forward pass), unweighted."""
    nb, npair = data["bc_points"].shape[0], data["pair_a"].shape[0]
    pts = torch.cat([data["bc_points"], data["pair_a"], data["pair_b"], data["obs_points"]])
    u = mlp(params, pts, pde.bounds)
    b_err = torch.cat([u[:nb] - data["bc_values"], u[nb:nb + npair] - u[nb + npair:nb + 2 * npair]])
    d_err = u[nb + 2 * npair:] - data["obs_values"]
    return (b_err * b_err).mean(), (d_err * d_err).mean()


def nested_loss_parts(params: Params, data, pde: PDEFamily, weights: LossWeights):
    """``loss_parts`` with input derivatives by nested reverse-mode autograd (eager)."""
    colloc = data["colloc"].detach().requires_grad_(True)
    d = {}
    with torch.enable_grad():  # input derivatives, also in adapt's final no-grad evaluation
        u = mlp(params, colloc, pde.bounds)
        first = torch.autograd.grad(u.sum(), colloc, create_graph=True)[0]
        for name in pde.derivatives:
            idx = parse_derivative(name, pde.inputs)
            if len(idx) == 1:
                d[name] = first[:, idx[0]]
            else:
                d[name] = torch.autograd.grad(first[:, idx[0]].sum(), colloc,
                                              create_graph=True)[0][:, idx[1]]
    d["u"] = u
    r = pde.residual(d, pde.from_param(params["coef"]), colloc)
    boundary, obs = plain_terms(params, data, pde)
    parts = {"residual": (r * r).mean(), "boundary": boundary, "data": obs}
    parts["total"] = (weights.residual * parts["residual"] + weights.boundary * parts["boundary"]
                      + weights.data * parts["data"])
    return parts


def nested_autograd(prob: Problem, ref) -> Variant:
    """``adapt`` with nested-autograd input derivatives: why Taylor mode was chosen."""
    def loss_fn(params):
        return nested_loss_parts(params, prob.data, prob.pde, prob.weights)

    cur = [p.detach().clone().requires_grad_(True) for p in prob.params0.values()]
    total = loss_fn(prob.as_dict(cur))["total"]
    v = Variant("nested_autograd", "eager adapt, derivatives by nested torch.autograd.grad",
                adapt_runner(prob, loss_fn))
    grads = torch.autograd.grad(total, cur)
    v.loss_err, v.grad_err = discrepancy(total.detach(), grads, ref)
    return v


def deepxde(prob: Problem, ref) -> Variant:
    """DeepXDE 1.15, PyTorch backend, the same problem, network weights and input map."""
    if os.environ.setdefault("DDE_BACKEND", "pytorch") != "pytorch":
        raise SystemExit(f"DDE_BACKEND={os.environ['DDE_BACKEND']}; this benchmark needs pytorch")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import deepxde as dde
    with contextlib.redirect_stdout(io.StringIO()):
        dde.config.set_default_float("float32")
    data, pde = prob.data, prob.pde
    log_nu = dde.Variable(float(prob.params0["coef"][0]))

    def residual(x, y):
        u_x = dde.grad.jacobian(y, x, i=0, j=0)
        u_t = dde.grad.jacobian(y, x, i=0, j=1)
        u_xx = dde.grad.hessian(y, x, i=0, j=0)
        return u_t + y * u_x - torch.exp(log_nu) * u_xx

    def col(t):
        return t.numpy()[:, None]

    geom = dde.geometry.GeometryXTime(dde.geometry.Interval(*pde.bounds[0]),
                                      dde.geometry.TimeDomain(*pde.bounds[1]))
    conditions = [dde.icbc.PointSetBC(data["bc_points"].numpy(), col(data["bc_values"])),
                  dde.icbc.PointSetBC(data["obs_points"].numpy(), col(data["obs_values"]))]
    pinn_data = dde.data.TimePDE(geom, residual, conditions, num_domain=0, num_boundary=0,
                                 num_initial=0, anchors=data["colloc"].numpy())
    assert pinn_data.train_x.shape[0] == prob.n + data["bc_points"].shape[0] \
        + data["obs_points"].shape[0]
    net = dde.nn.FNN(list(prob.widths), "tanh", "Glorot normal")
    lo = torch.tensor([b[0] for b in pde.bounds])
    scale = 2.0 / (torch.tensor([b[1] for b in pde.bounds]) - lo)
    net.apply_feature_transform(lambda x: (x - lo) * scale - 1.0)
    with torch.no_grad():  # metapinn's initial weights
        for i, layer in enumerate(net.linears):
            layer.weight.copy_(prob.params0[f"w{i}"])
            layer.bias.copy_(prob.params0[f"b{i}"])
    model = dde.Model(pinn_data, net)
    with contextlib.redirect_stdout(io.StringIO()):
        model.compile("adam", lr=LR, external_trainable_variables=[log_nu])

    # loss and gradients at the initial weights, as DeepXDE's train step computes them
    variables = [p for i in range(len(net.linears))
                 for p in (net.linears[i].weight, net.linears[i].bias)] + [log_nu]
    losses = model.outputs_losses_train(pinn_data.train_x, pinn_data.train_y,
                                        pinn_data.train_aux_vars)[1]
    total = losses.sum()
    grads = torch.autograd.grad(total, variables)

    with contextlib.redirect_stdout(io.StringIO()):  # sets up train_state, callbacks
        model.train(iterations=1, display_every=10**9, verbose=0)

    def run(steps: int) -> float:
        state, callbacks = model.train_state, model.callbacks
        t0 = time.perf_counter()
        for _ in range(steps):  # Model._train_sgd's body, minus the display-time _test
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
    v.loss_err, v.grad_err = discrepancy(total.detach(), grads, ref)
    return v


# ----- the matmul floor ----------------------------------------------------------------
def n_streams(pde: PDEFamily) -> int:
    """K of mlp_derivatives: value + distinct first-order + second-order streams."""
    multi = [parse_derivative(n, pde.inputs) for n in pde.derivatives]
    firsts = {m[0] for m in multi if len(m) == 1} | {i for m in multi if len(m) == 2 for i in m}
    seconds = {m for m in multi if len(m) == 2}
    return 1 + len(firsts) + len(seconds)


def step_matmuls(prob: Problem) -> list[tuple[str, int, int, int]]:
    """Every matmul of one Taylor-mode step as (kind, rows, inner, cols):
    ``fwd`` X @ Wᵀ, ``dX`` G @ W, ``dW`` Gᵀ @ X."""
    k = n_streams(prob.pde)
    d = prob.data
    n_plain = sum(d[key].shape[0] for key in ("bc_points", "pair_a", "pair_b", "obs_points"))
    out = []
    layers = list(zip(prob.widths[:-1], prob.widths[1:], strict=True))
    for rows_first, rows_rest in ((prob.n, k * prob.n), (n_plain, n_plain)):
        for i, (fan_in, fan_out) in enumerate(layers):
            rows = rows_first if i == 0 else rows_rest
            out.append(("fwd", rows, fan_in, fan_out))
            out.append(("dW", fan_out, rows, fan_in))
            if i > 0:  # the inputs themselves need no gradient
                out.append(("dX", rows, fan_out, fan_in))
    return out


def matmul_floor(prob: Problem, repeats: int = 7) -> tuple[float, float]:
    """(GFLOP per step, seconds for its matmuls alone, median of ``repeats``)."""
    gen = torch.Generator().manual_seed(0)
    calls = []
    for kind, m, k, n in step_matmuls(prob):
        if kind == "fwd":  # X (m, k) @ W (n, k)ᵀ
            a, b = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen).T
        elif kind == "dX":  # G (m, k) @ W (k, n)
            a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        else:  # G (k, m)ᵀ @ X (k, n)
            a, b = torch.randn(k, m, generator=gen).T, torch.randn(k, n, generator=gen)
        calls.append((a, b, torch.empty(m, n)))
    flops = sum(2 * m * k * n for _, m, k, n in step_matmuls(prob))

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
    return flops / 1e9, statistics.median(times)


# ----- running and reporting -------------------------------------------------------------
def build_variants(prob: Problem, chunk: int, log) -> list[Variant]:
    torch._dynamo.reset()  # static shapes per size, fresh compile times
    ref = reference(prob)
    builders = [("deepxde", deepxde), ("metapinn", shipped), ("compile_loss", compile_loss),
                ("compile_loss_autotune",
                 lambda p, r: compile_loss(p, r, "max-autotune-no-cudagraphs")),
                ("compile_step", compile_step)]
    if prob.n > chunk:
        builders.append(("compile_chunked", lambda p, r: compile_chunked(p, r, chunk)))
    builders.append(("nested_autograd", nested_autograd))
    variants = []
    for name, build in builders:
        t0 = time.perf_counter()
        try:
            v = build(prob, ref)
        except Exception as e:  # report and go on: one broken variant must not stop the rest
            log(f"  {name}: FAILED to build: {type(e).__name__}: {str(e).splitlines()[0]}")
            continue
        extra = "" if math.isnan(v.update_err) else \
            f", params after 3 steps vs adapt {v.update_err:.1e}·lr"
        log(f"  {name}: built in {time.perf_counter() - t0:.1f} s; vs eager library: "
            f"loss {v.loss_err:.1e}, grads {v.grad_err:.1e}{extra}"
            f"{'' if v.ok else '  <-- MISMATCH'}")
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
        log(f"  WARNING: torch.compile recompiled while timing ({graphs} → "
            f"{dict(counters['stats'])})")


def default_steps(n: int) -> int:
    return 100 if n <= 4000 else 50


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "nproc": str(os.cpu_count()), "torch": torch.__version__,
            "python": platform.python_version()}


def tables(rows, floors) -> str:
    """The summary and full Markdown tables."""
    lines = ["| N | DeepXDE ms/step | metapinn ms/step (shipped) | ratio | best variant | "
             "ms/step | ratio | floor ms |", "|---:|---:|---:|---:|---|---:|---:|---:|"]
    for n, vs in rows.items():
        by = {v.name: v for v in vs}
        dx = by["deepxde"].ms if "deepxde" in by else math.nan
        ship = by["metapinn"].ms
        ours = [v for v in vs if v.name not in ("deepxde", "metapinn") and v.ok]
        best = min(ours, key=lambda v: v.ms) if ours else by["metapinn"]
        lines.append(f"| {n} | {dx:.1f} | {ship:.1f} | {ship / dx:.2f} | {best.name} | "
                     f"{best.ms:.1f} | {best.ms / dx:.2f} | {floors[n][1] * 1e3:.1f} |")
    lines += ["", "| N | variant | ms/step | ÷ DeepXDE | × floor | compile s | loss/grad check |",
              "|---:|---|---:|---:|---:|---:|---|"]
    for n, vs in rows.items():
        dx = next((v.ms for v in vs if v.name == "deepxde"), math.nan)
        for v in vs:
            comp = f"{v.compile_s:.1f}" if not math.isnan(v.compile_s) else "–"
            check = "reference" if v.name == "metapinn" else (
                f"{'ok' if v.ok else 'MISMATCH'} ({v.loss_err:.0e}, {v.grad_err:.0e})")
            lines.append(f"| {n} | {v.name} | {v.ms:.1f} | {v.ms / dx:.2f} | "
                         f"{v.ms / (floors[n][1] * 1e3):.1f} | {comp} | {check} |")
    lines += ["", "Matmul floor per step (all matmuls of the Taylor-mode forward + backward, "
              "timed as bare torch.mm of the same shapes):", "",
              "| N | GFLOP/step | floor ms | achieved GFLOP/s |", "|---:|---:|---:|---:|"]
    for n, (gflop, sec) in floors.items():
        lines.append(f"| {n} | {gflop:.3f} | {sec * 1e3:.2f} | {gflop / sec:.0f} |")
    return "\n".join(lines)


def write_results(rows, floors, info, text: str, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    sizes = list(rows)
    names = list(dict.fromkeys(v.name for vs in rows.values() for v in vs))

    def grid(attr):
        a = np.full((len(sizes), len(names)), np.nan)
        for i, n in enumerate(sizes):
            for v in rows[n]:
                a[i, names.index(v.name)] = getattr(v, attr)
        return a

    ms = grid("ms")
    dx = ms[:, names.index("deepxde")] if "deepxde" in names else np.full(len(sizes), np.nan)
    floor_ms = np.array([floors[n][1] * 1e3 for n in sizes])
    dims = ("size", "variant")
    ds = xr.Dataset(
        {
            "ms_per_step": (dims, ms, {"long_name": "median wall time per training step",
                                       "units": "ms"}),
            "ratio_to_deepxde": (dims, ms / dx[:, None],
                                 {"long_name": "time per step relative to DeepXDE", "units": "1"}),
            "times_floor": (dims, ms / floor_ms[:, None],
                            {"long_name": "time per step relative to the matmul floor",
                             "units": "1"}),
            "compile_time": (dims, grid("compile_s"),
                             {"long_name": "first-call (compile) wall time", "units": "s"}),
            "loss_rel_err": (dims, grid("loss_err"),
                             {"long_name": "relative loss difference to the eager library",
                              "units": "1"}),
            "grad_rel_err": (dims, grid("grad_err"),
                             {"long_name": "max relative gradient difference to the eager "
                                           "library", "units": "1"}),
            "floor_ms": ("size", floor_ms,
                         {"long_name": "matmul floor of one Taylor-mode step", "units": "ms"}),
            "step_gflop": ("size", np.array([floors[n][0] for n in sizes]),
                           {"long_name": "matmul work of one Taylor-mode step",
                            "units": "GFLOP"}),
        },
        coords={"size": ("size", np.array(sizes), {"long_name": "collocation points"}),
                "variant": ("variant", np.array(names, dtype=object),
                            {"long_name": "implementation"})},
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
                    help="numbers of collocation points")
    ap.add_argument("--steps", type=int, help="timed steps per block (default 100 for "
                    "N ≤ 4000, else 50)")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks per variant")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    ap.add_argument("--chunk", type=int, default=2000,
                    help="collocation points per chunk of compile_chunked")
    ap.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    warmup, repeats = (1, 1) if args.quick else (5, args.repeats)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    start = time.perf_counter()
    rows, floors = {}, {}
    for prob in make_problems(args.sizes):
        steps = 2 if args.quick else (args.steps or default_steps(prob.n))
        log(f"N = {prob.n}: building variants")
        variants = build_variants(prob, args.chunk, log)
        log(f"N = {prob.n}: timing {repeats} × {steps} steps per variant")
        time_variants(variants, steps, warmup, repeats, log)
        floors[prob.n] = matmul_floor(prob)
        rows[prob.n] = variants
    import deepxde as dde  # imported by the DeepXDE variant

    info = {**machine(), "deepxde": dde.__version__, "threads": str(args.threads),
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "quick": str(args.quick)}
    text = tables(rows, floors)
    print(text)
    print(f"\n{info['date']}, {info['nproc']} CPUs ({info['cpu']}), torch {info['torch']}, "
          f"DeepXDE {info['deepxde']}, {args.threads} threads, load average "
          f"{info['load_before']} → {info['load_after']}, {time.perf_counter() - start:.0f} s")
    write_results(rows, floors, info, text, args.out)


if __name__ == "__main__":
    main()
