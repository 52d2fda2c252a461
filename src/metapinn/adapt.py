"""The ONE inner loop of metapinn: adapt a parameter dict to one task.

Used by evaluation (solve a held-out task from some initialisation, logging errors) and by
meta-training (a few differentiable steps inside the outer loop). Optimisers are pure
functions over parameter dicts (:class:`Optimizer`), so the same loop runs with or without
a graph through the updates (``differentiable=True`` gives MAML's second-order path).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from .loss import TaskData, solution, stack
from .nets import Params
from .pdes.base import PDEFamily
from .settings import AdaptSettings
from .tasks import Task

log = logging.getLogger("metapinn")

# L-BFGS phases of at least this many iterations compile their loss and gradient (with
# ``adapt.compile``): the compile (a few seconds) pays from about a thousand evaluations
LBFGS_COMPILE_FROM = 500
# a solve with at least this many logged steps (adapt.log_steps()) compiles its evaluation's
# forward pass (with ``adapt.compile``): 0.48-0.88x the eager time per evaluation on a CPU
# (the larger the grid, the larger the gain), for 0.06-0.1 s at its first call in a process
# with a warm Inductor cache and 0.6-2.8 s cold, once per family and run
# (benchmarks/eval_cost.py)
EVAL_COMPILE_FROM = 50

LossFn = Callable[[Params], dict[str, torch.Tensor]]
BatchLossFn = Callable[[Params, TaskData], dict[str, torch.Tensor]]


# ----- functional optimisers -------------------------------------------------------------
@dataclass(frozen=True)
class Optimizer:
    """A first-order optimiser as pure functions: ``init(params)`` and
    ``update(params, grads, state, lr) -> (params, state)`` over lists of tensors."""

    name: str
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def init(self, params: list[torch.Tensor]):
        if self.name == "sgd":
            return ()
        zeros = [torch.zeros_like(p) for p in params]
        return (0, zeros, [z.clone() for z in zeros])

    def scalars(self, t: int, lr: float) -> tuple[float, float]:
        """(step size, second-moment correction) of step ``t`` (1-based): Adam's bias
        corrections folded into the step size (SGD: ``(lr, 1)``)."""
        if self.name == "sgd":
            return lr, 1.0
        b1, b2 = self.betas
        return lr / (1 - b1 ** t), math.sqrt(1 - b2 ** t)

    def apply(self, params, grads, moments, step, c2, factors):
        """The update as a traceable function without Python state, for ``torch.compile``
        and ``vmap``: ``moments`` is ``(m, v)`` (Adam) or ``()``; ``step`` and ``c2`` come
        from :meth:`scalars` (tensors, batched under vmap); ``factors`` scale the step per
        tensor. Returns ``(params, moments)``."""
        if self.name == "sgd":
            return [p - (step * f) * g for p, g, f in zip(params, grads, factors, strict=True)], ()
        b1, b2 = self.betas
        m, v = moments
        m = [b1 * mi + (1 - b1) * g for mi, g in zip(m, grads, strict=True)]
        v = [b2 * vi + (1 - b2) * g * g for vi, g in zip(v, grads, strict=True)]
        params = [p - (step * f) * mi / (vi.sqrt() / c2 + self.eps)
                  for p, mi, vi, f in zip(params, m, v, factors, strict=True)]
        return params, (m, v)

    def update(self, params, grads, state, lr, foreach: bool = True):
        """One step with learning rate ``lr`` (a float, or one per tensor). ``foreach`` uses
        the fused multi-tensor kernels (not vmap-able); the per-tensor path is the same
        arithmetic (:meth:`apply`) and works under ``torch.func`` transforms."""
        lrs = list(lr) if isinstance(lr, list | tuple) else [lr] * len(params)
        if self.name == "sgd":
            if foreach:
                return torch._foreach_sub(params, torch._foreach_mul(grads, lrs)), state
            return self.apply(params, grads, (), 1.0, 1.0, lrs)[0], state
        t, m, v = state
        b1, b2 = self.betas
        t += 1
        c1, c2 = 1 - b1 ** t, math.sqrt(1 - b2 ** t)
        if foreach:
            m = torch._foreach_add(torch._foreach_mul(m, b1), grads, alpha=1 - b1)
            v = torch._foreach_addcmul(torch._foreach_mul(v, b2), grads, grads, value=1 - b2)
            denom = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(v), c2), self.eps)
            params = torch._foreach_addcdiv(params, m, denom, [-a / c1 for a in lrs])
            return params, (t, m, v)
        params, (m, v) = self.apply(params, grads, (m, v), 1.0 / c1, c2, lrs)
        return params, (t, m, v)


def train_step(loss_fn: BatchLossFn, opt: Optimizer, names: list[str], factors: list[float],
               with_grads: bool = False):
    """Loss, gradient and optimiser update of one step as a pure function of tensors:
    ``(tensors, moments, step, c2, data) -> (tensors, moments, parts)``, with ``step`` and
    ``c2`` (0-d tensors) from :meth:`Optimizer.scalars`, so that the schedule triggers no
    recompilation when it is compiled, and ``loss_fn(params, data)``. ``with_grads``
    appends the gradient at the step's input tensors (what LEAP's trajectory keeps)."""

    def total_and_parts(tensors, data):
        parts = loss_fn(dict(zip(names, tensors, strict=True)), data)
        return parts["total"], parts

    grad_fn = torch.func.grad(total_and_parts, has_aux=True)

    def step(tensors, moments, step_size, c2, data):
        grads, parts = grad_fn(tensors, data)
        new, moments = opt.apply(tensors, grads, moments, step_size, c2, factors)
        return (new, moments, parts, grads) if with_grads else (new, moments, parts)

    return step


def compiled_step(loss_fn: LossFn, opt: Optimizer, names: list[str], factors: list[float],
                  with_grads: bool = False):
    """:func:`train_step` of one task as ONE ``torch.compile``d function (Inductor fuses
    the element-wise work of loss, gradient and update): ``(tensors, moments, step, c2) ->
    (tensors, moments, parts)``, and the gradients with ``with_grads``."""
    step = train_step(lambda p, _: loss_fn(p), opt, names, factors, with_grads)
    return torch.compile(lambda tensors, moments, size, c2: step(tensors, moments, size, c2,
                                                                 None),
                         fullgraph=True, dynamic=False)


def batched_step(loss_fn: BatchLossFn, opt: Optimizer, names: list[str], factors: list[float]):
    """:func:`train_step` for T tasks at once: its ``vmap`` over stacked parameters,
    moments, step sizes (one per task) and task data (``c2`` is shared). The gradient of
    each task's own loss is its serial gradient, so every task follows its serial
    trajectory."""
    return torch.func.vmap(train_step(loss_fn, opt, names, factors),
                           in_dims=(0, 0, 0, None, 0))


# graphs one compiled function may hold in a process. Every step of this module is the same
# Python code, so TorchDynamo counts each new problem (loss, shapes, dtype) as a recompile of
# it, and its default limit (8) would make the ninth problem of a long-lived process (a test
# session, a notebook, a job that also validates) fail to compile
COMPILED_VARIANTS = 64


def compile_limit():
    """Context in which a first call of a compiled step may add a graph up to
    :data:`COMPILED_VARIANTS` (TorchDynamo's recompile limit, raised for that call only)."""
    return torch._dynamo.config.patch(recompile_limit=COMPILED_VARIANTS)


def _warm_up(compiled, eager, args, like: torch.Tensor):
    """Call the compiled step once (it compiles, or loads from the Inductor cache) and
    time it: ``(step, seconds)``. Where compiling fails (no working compiler toolchain on
    the machine, an operator the backend lacks), warn and return ``(eager, 0)``."""
    t0 = _now(like)
    try:
        with compile_limit():
            compiled(*args)
    except Exception as err:  # noqa: BLE001 - whatever the backend raises, eager still works
        warn_compile_failed(err, "using the eager step")
        return eager, 0.0
    return compiled, _now(like) - t0


def warn_compile_failed(err: Exception, instead: str) -> None:
    """The one warning of a failed compile: the error's first line and what runs instead."""
    first = str(err).strip().splitlines()
    log.warning("torch.compile failed (%s: %s); %s (set adapt.compile=false to skip the "
                "attempt)", type(err).__name__, first[0] if first else "", instead)


def _lbfgs_closure(loss_fn: LossFn, names: list[str], cur: list[torch.Tensor],
                   compile_: bool, result: AdaptResult) -> Callable[[], torch.Tensor]:
    """The closure of torch's L-BFGS over the tensors ``cur``: it sets their ``.grad`` and
    returns the loss. With ``compile_`` loss and gradient are one ``torch.compile``d
    function of the tensors, compiled here, before the timed iterations (its time goes to
    ``result.compile_time``); otherwise, or where compiling fails, eager autograd."""

    def eager():
        for p in cur:
            p.grad = None
        loss = loss_fn(dict(zip(names, cur, strict=True)))["total"]
        loss.backward()
        return loss

    if not compile_:
        return eager

    def total(tensors):
        return loss_fn(dict(zip(names, tensors, strict=True)))["total"]

    value_and_grad, seconds = _warm_up(
        torch.compile(torch.func.grad_and_value(total), fullgraph=True, dynamic=False),
        None, ([p.detach() for p in cur],), cur[0])
    result.compile_time += seconds
    if value_and_grad is None:  # compiling failed (warned): eager autograd
        return eager

    def compiled():
        grads, loss = value_and_grad([p.detach() for p in cur])
        for p, g in zip(cur, grads, strict=True):
            p.grad = g
        return loss

    return compiled


def _now(like: torch.Tensor) -> float:
    """A clock reading after the device has finished the queued work (CUDA is async)."""
    if like.is_cuda:
        torch.cuda.synchronize(like.device)
    return time.perf_counter()


# ----- evaluation against the reference -------------------------------------------------
class CompiledSolution:
    """:func:`metapinn.loss.solution` as one ``torch.compile``d function, compiled at its
    first call (:attr:`compile_time`), for the evaluators of a solve or of a batch of
    solves (one graph per family and grid; tensors of equal shapes share it). Where
    compiling fails it warns once and every later call, for every evaluator sharing it,
    runs eagerly."""

    def __init__(self):
        self._fn = torch.compile(solution, fullgraph=True, dynamic=False)
        self.compiled = False
        self.compile_time = 0.0

    def stay_eager(self) -> None:
        """Do not try to compile (the solve's training step already failed to)."""
        self._fn = None

    def __call__(self, params: Params, points: torch.Tensor, pde: PDEFamily) -> torch.Tensor:
        if self._fn is None:
            return solution(params, points, pde)
        if self.compiled:
            with compile_limit():
                return self._fn(params, points, pde)
        t0 = _now(points)
        try:
            with compile_limit():
                u = self._fn(params, points, pde)
        except Exception as err:  # noqa: BLE001 - whatever the backend raises, eager works
            warn_compile_failed(err, "evaluating eagerly")
            self._fn = None
            return solution(params, points, pde)
        self.compile_time, self.compiled = _now(points) - t0, True
        return u


class Evaluator:
    """u_rel_l2 on the reference grid (every ``stride``-th node along each axis) and the
    coefficient errors of a parameter dict; ``forward`` (a :class:`CompiledSolution`)
    computes u compiled, else eagerly."""

    def __init__(self, pde: PDEFamily, task: Task, dtype=torch.float32, device="cpu",
                 stride: int = 1, forward: CompiledSolution | None = None):
        if stride < 1:
            raise ValueError(f"stride must be ≥ 1, got {stride}")
        self.pde, self.task = pde, task
        shape = task.u_ref.shape
        nodes = pde.grid_points().reshape(*shape, -1)[::stride, ::stride]
        self.points = torch.as_tensor(nodes.reshape(-1, nodes.shape[-1]), dtype=dtype,
                                      device=device)
        self.u_ref = task.u_ref[::stride, ::stride].ravel()
        self.u_norm = float(np.linalg.norm(self.u_ref))
        self.forward = forward or solution

    @torch.no_grad()
    def __call__(self, params: Params) -> dict[str, np.ndarray | float]:
        # detached: the same graph whether or not the caller's tensors require grad
        params = {k: v.detach() for k, v in params.items()}
        u = self.forward(params, self.points, self.pde).double().cpu().numpy()
        theta = self.pde.from_param(params["coef"].double().cpu().numpy())
        return {
            "u_rel_l2": float(np.linalg.norm(u - self.u_ref) / self.u_norm),
            "coef": theta,
            "coef_rel_err": self.pde.coef_errors(theta, self.task.coefficients),
        }


def _stay_eager(evaluators) -> None:
    """Keep these evaluators eager: the step just failed to compile (the same toolchain
    would fail again and warn twice)."""
    for e in evaluators:
        if isinstance(e, Evaluator) and isinstance(e.forward, CompiledSolution):
            e.forward.stay_eager()


@dataclass
class AdaptResult:
    """Final parameters, the log (one record per logged step) and adaptation time."""

    params: Params
    records: list[dict] = field(default_factory=list)
    wall_time: float = 0.0
    # with keep_trajectory: (θ^i, L(θ^i), ∇L(θ^i)) per step i < K, then (θ^K, L(θ^K), None)
    trajectory: list[tuple[Params, torch.Tensor, Params | None]] = field(default_factory=list)
    # the first logged step whose loss or error was not finite (the run stopped there)
    diverged_at: int | None = None
    # seconds spent compiling the step (not in wall_time); a run without a log
    # (record_log=False, untimed) compiles on its first step, whose time it includes
    compile_time: float = 0.0
    compile_failed: bool = False  # compiling was asked for and failed: the steps ran eagerly
    # L-BFGS iterations made (fewer than lbfgs_steps: the line search found no decrease)
    lbfgs_iterations: int = 0


# ----- the inner loop -------------------------------------------------------------------
def adapt(params: Params, loss_fn: LossFn, settings: AdaptSettings, *,
          evaluate: Callable[[Params], dict] | None = None, differentiable: bool = False,
          progress: bool | None = None, label: str = "", record_log: bool = True,
          keep_trajectory: bool = False, lr_scale: Params | None = None) -> AdaptResult:
    """Run the inner optimiser on one task from ``params``.

    Args:
        params: initial parameter dict (network + ``"coef"``); not modified.
        loss_fn: params → dict of loss parts with ``"total"`` (e.g. :func:`loss.loss_parts`).
        settings: optimiser, steps, schedule, logging interval.
        evaluate: params → errors against the reference, called at the logged steps
            (:meth:`AdaptSettings.log_steps`)
            (its time is excluded from ``wall_time``). ``None`` logs losses only.
        differentiable: keep the graph through every update (MAML); the returned params
            are then functions of the input params. L-BFGS is refused in this mode.
        progress: tqdm bar (default: when stderr is a terminal) or plain log lines.
        label: prefix of progress output.
        record_log: keep the log (off inside meta-training, where the loop may run under
            ``vmap`` and nothing may leave the graph as a Python number). A logged step
            with a non-finite loss or error stops the run: ``diverged_at`` records it and
            the remaining logged steps are NaN. An L-BFGS line search whose step size
            overflows the dtype (torch raises) makes the parameters NaN, so it is recorded
            the same way at the next logged step.
        keep_trajectory: store every iterate with its loss and gradient (LEAP), detached.
        lr_scale: per-element step multipliers, a tensor of each parameter's shape (the
            rates Meta-SGD learns); the step of an element is ``lr × coef_lr_factor ×
            lr_scale``. With ``differentiable`` the result is differentiable in them too.
            They scale the first-order steps; an L-BFGS phase ignores them (its line
            search sets its steps).

    Returns:
        :class:`AdaptResult`; ``records`` hold ``step``, ``wall_time``, the loss parts and
        the entries of ``evaluate``.
    """
    if differentiable and settings.lbfgs_steps:
        raise ValueError("L-BFGS steps cannot be differentiated through; set lbfgs_steps=0")
    if keep_trajectory and settings.lbfgs_steps:
        raise ValueError("keep_trajectory covers first-order steps only; set lbfgs_steps=0")
    names = list(params)
    factors = step_factors(names, settings, lr_scale, params)
    per_element = lr_scale is not None  # tensor factors: the per-tensor update path

    def as_dict(tensors):
        return dict(zip(names, tensors, strict=True))

    if differentiable:
        cur = [params[k] for k in names]
    else:
        cur = [params[k].detach().clone() for k in names]
    opt = Optimizer(settings.optimizer)
    state = opt.init(cur)
    total = settings.total_steps
    result = AdaptResult(params={})
    ticker = _Ticker(total, progress, label)

    def record(step, parts, tensors):
        rec = _record(result, step, parts, evaluate, as_dict(tensors))
        ticker.note(step, rec["loss"])

    logged = _log_schedule(settings)

    # first-order phase: functional updates. Differentiable mode takes the gradient with
    # torch.func.grad, so the whole loop composes with vmap over tasks and with an outer grad.
    def total_and_parts(p):
        parts = loss_fn(p)
        return parts["total"], parts

    func_grad = torch.func.grad(total_and_parts, has_aux=True)
    eager_loss = loss_fn
    # the compiled step: loss, gradient and update in one graph (not with a graph kept
    # through the updates); it hands out the gradients too where LEAP keeps them
    fused, first = None, []
    if settings.compile and settings.steps and not differentiable:
        compiled = compiled_step(loss_fn, opt, names, factors, with_grads=keep_trajectory)
        moments = state[1:] if opt.name == "adam" else ()
        scalar = partial(torch.tensor, dtype=cur[0].dtype, device=cur[0].device)
        if record_log:  # a logged run compiles before its clock starts (a discarded step)
            fused, result.compile_time = _warm_up(
                compiled, None, ([p.clone() for p in cur], moments, scalar(0.0), scalar(1.0)),
                cur[0])
        else:  # an inner run of meta-training (untimed): its first step compiles
            size, c2 = opt.scalars(1, settings.lr_at(0))
            ok, result.compile_time = _warm_up(
                lambda *a: first.append(compiled(*a)), None,
                (cur, moments, scalar(size), scalar(c2)), cur[0])
            fused = compiled if ok is not None else None
        result.compile_failed = fused is None
        if result.compile_failed:
            _stay_eager([evaluate])
    for step in range(settings.steps):
        t0 = _now(cur[0])
        prev = cur
        if fused is not None:
            if first:  # the first step, run by the compile
                out = first.pop()
            else:
                size, c2 = opt.scalars(step + 1, settings.lr_at(step))
                out = fused(cur, moments, scalar(size), scalar(c2))
            cur, moments, parts, *grads = out
            grads = grads[0] if grads else None
        elif differentiable:
            g, parts = func_grad(as_dict(cur))
            lr = [settings.lr_at(step) * f for f in factors]
            cur, state = opt.update(cur, [g[k] for k in names], state, lr, foreach=False)
        else:
            cur = [p.requires_grad_(True) for p in cur]
            parts = loss_fn(as_dict(cur))
            grads = torch.autograd.grad(parts["total"], cur)
            lr = [settings.lr_at(step) * f for f in factors]
            with torch.no_grad():
                cur, state = opt.update([p.detach() for p in cur], list(grads), state, lr,
                                        foreach=not per_element)
        result.wall_time += _now(cur[0]) - t0
        if keep_trajectory:
            gl = [g[k] for k in names] if differentiable else grads
            result.trajectory.append((as_dict([p.detach() for p in prev]),
                                      parts["total"].detach(),
                                      as_dict([x.detach() for x in gl])))
        if record_log and logged(step):
            record(step, {k: v.detach() for k, v in parts.items()}, prev)
            if result.diverged_at is not None:
                break
        ticker.tick()

    # optional L-BFGS phase (evaluation only): the iterations between two logged steps in
    # one call of torch's L-BFGS (a call per iteration would evaluate the loss twice per
    # iteration); zero tolerances, so that it runs the iterations asked for
    if settings.lbfgs_steps and result.diverged_at is None:
        cur = [p.detach().clone().requires_grad_(True) for p in cur]
        lbfgs = torch.optim.LBFGS(cur, lr=1.0, max_iter=1, history_size=50,
                                  tolerance_grad=0.0, tolerance_change=0.0,
                                  line_search_fn="strong_wolfe")
        # compiled where it pays for its compile, and not again where the first-order step
        # just failed to compile (the same loss: it would fail and warn twice)
        first_order_failed = settings.compile and settings.steps and fused is None
        closure = _lbfgs_closure(loss_fn, names, cur, settings.compile
                                 and settings.lbfgs_steps >= LBFGS_COMPILE_FROM
                                 and not first_order_failed, result)

        marks = [s for s in settings.log_steps() if settings.steps < s < total] + [total]
        step, converged = settings.steps, False
        for mark in marks:
            if logged(step):
                with torch.no_grad():
                    record(step, eager_loss(as_dict(cur)), cur)
                if result.diverged_at is not None:
                    break
            while step < mark and not converged:
                lbfgs.param_groups[0]["max_iter"] = mark - step
                lbfgs.param_groups[0]["max_eval"] = 2 * (mark - step) + 10
                t0 = time.perf_counter()
                try:
                    lbfgs.step(closure)
                except RuntimeError as err:
                    if "overflow" not in str(err):
                        raise
                    # the line search's step size outgrew the dtype (torch raises from
                    # p.add_(d, alpha=t)): the run diverged. Its parameters become NaN, so
                    # the next logged step records the divergence like any other
                    log.warning("%sL-BFGS's line search overflowed after step %d (%s); the "
                                "run counts as diverged", f"{label}: " if label else "",
                                step, err)
                    with torch.no_grad():
                        for p in cur:
                            p.fill_(float("nan"))
                    converged = True
                result.wall_time += time.perf_counter() - t0
                if converged:
                    break
                done = lbfgs.state[cur[0]]["n_iter"] - (step - settings.steps)
                # no iteration made: the gradient or the step is exactly zero (converged, or
                # the line search found no decrease); the parameters stay as they are
                converged = done == 0
                ticker.tick(done)
                step += done
                result.lbfgs_iterations += done
            step = mark

    if not differentiable:
        cur = [p.detach() for p in cur]
    if keep_trajectory:
        with torch.no_grad():
            result.trajectory.append((as_dict([p.detach() for p in cur]),
                                      eager_loss(as_dict(cur))["total"].detach(), None))
    if record_log and result.diverged_at is None:
        with torch.no_grad():
            final = eager_loss(as_dict(cur))
        record(total, final, cur)
    _pad_diverged(result, settings)
    ticker.close()
    result.params = as_dict(cur)
    return result


def adapt_batch(params: Sequence[Params], loss_fn: BatchLossFn, data: Sequence[TaskData],
                settings: AdaptSettings, *, lrs: Sequence[float] | None = None,
                evaluate: Sequence[Callable[[Params], dict] | None] | None = None,
                progress: bool | None = None, label: str = "",
                lr_scale: Params | None = None) -> list[AdaptResult]:
    """:func:`adapt` for T tasks at once, as one ``vmap`` program (the GPU path).

    Task ``i`` starts from ``params[i]`` with learning rate ``lrs[i]`` (default
    ``settings.lr``; the schedule scales each) and its own optimiser state, and follows the
    trajectory :func:`adapt` gives it alone, up to round-off. Its log, divergence flag and
    NaN padding are those of :func:`adapt`: a task whose loss or error becomes non-finite
    stops being logged (its row is NaN from there on) while the others go on. Every task
    needs the same point counts (true within a family).

    Args:
        params: one initial parameter dict per task (the same dict may repeat).
        loss_fn: ``(params, data) -> loss parts`` of one task (e.g. :func:`loss.loss_parts`
            with the family and weights bound); it runs under ``vmap``.
        data: one task-data dict per task.
        settings: as for :func:`adapt`; ``lbfgs_steps`` must be 0. With ``compile`` the
            batched step is one ``torch.compile``d function.
        lrs: learning rate per task.
        evaluate: per task, ``params -> errors`` (or ``None``), called at logged steps.
        lr_scale: per-element step multipliers shared by every task (as for :func:`adapt`).

    Returns:
        One :class:`AdaptResult` per task. ``wall_time`` is the batch's elapsed time
        divided by T: each task's share of the program that adapted them all.
    """
    n = len(params)
    if n == 0 or len(data) != n:
        raise ValueError(f"adapt_batch needs one data dict per initialisation, got {n} "
                         f"initialisations and {len(data)} data dicts")
    if settings.lbfgs_steps:
        raise ValueError("L-BFGS steps are not batched; set lbfgs_steps=0 or adapt the "
                         "tasks one by one")
    base = np.full(n, settings.lr) if lrs is None else np.asarray(lrs, dtype=float)
    if base.shape != (n,) or not (base > 0).all():
        raise ValueError(f"lrs must hold one positive learning rate per task, got {lrs}")
    evaluate = [None] * n if evaluate is None else list(evaluate)
    names = list(params[0])
    stacked = stack([{k: p[k].detach() for k in names} for p in params])
    cur = [stacked[k] for k in names]
    batch_data = stack(list(data))
    tensor = partial(torch.as_tensor, dtype=cur[0].dtype, device=cur[0].device)
    opt = Optimizer(settings.optimizer)
    moments = opt.init(cur)[1:]
    factors = step_factors(names, settings, lr_scale, params[0])
    step_fn = batched_step(loss_fn, opt, names, factors)
    results = [AdaptResult(params={}) for _ in range(n)]
    if settings.compile:
        step_fn, seconds = _warm_up(
            torch.compile(step_fn, fullgraph=True, dynamic=False), step_fn,
            ([p.clone() for p in cur], moments, tensor(np.zeros(n)), tensor(1.0), batch_data),
            cur[0])
        for r in results:
            r.compile_time = seconds
        if not seconds:  # compiling failed (warned): the evaluations stay eager too
            _stay_eager(evaluate)

    def task(tensors, i):
        return {k: t[i] for k, t in zip(names, tensors, strict=True)}

    def record(step, parts, tensors, live):
        losses = []
        for i in list(live):
            rec = _record(results[i], step, {k: v[i] for k, v in parts.items()}, evaluate[i],
                          task(tensors, i))
            losses.append(rec["loss"])
            if results[i].diverged_at is not None:
                live.remove(i)
        ticker.note(step, float(np.nanmedian(losses)) if np.isfinite(losses).any() else np.nan)

    ticker = _Ticker(settings.steps, progress, label)
    logged = _log_schedule(settings)
    live, elapsed = list(range(n)), 0.0
    for step in range(settings.steps):
        t0 = _now(cur[0])
        size, c2 = opt.scalars(step + 1, base * settings.decay_at(step))
        new, moments, parts = step_fn(cur, moments, tensor(size), tensor(c2), batch_data)
        elapsed += _now(cur[0]) - t0
        for r in results:
            r.wall_time = elapsed / n
        if logged(step):
            was = set(live)
            record(step, {k: v.detach() for k, v in parts.items()}, cur, live)
            for i in was - set(live):  # diverged here: keep what adapt() would return
                results[i].params = {k: v.detach().clone() for k, v in task(new, i).items()}
        cur = new
        ticker.tick()
        if not live:
            break
    cur = [t.detach() for t in cur]
    if live:
        with torch.no_grad():
            final = torch.func.vmap(
                lambda ts, d: loss_fn(dict(zip(names, ts, strict=True)), d))(cur, batch_data)
        record(settings.steps, final, cur, live)
    for i, r in enumerate(results):
        if not r.params:
            r.params = {k: v.clone() for k, v in task(cur, i).items()}
        _pad_diverged(r, settings)
    ticker.close()
    return results


def step_factors(names: list[str], settings: AdaptSettings, lr_scale: Params | None,
                 params: Params) -> list:
    """Each parameter's multiplier of the learning rate: ``coef_lr_factor`` for the
    coefficients, 1 for the network, times ``lr_scale[k]`` (a tensor of the parameter's
    shape) where given."""
    factors = [settings.coef_lr_factor if k == "coef" else 1.0 for k in names]
    if lr_scale is None:
        return factors
    bad = [k for k in names if k not in lr_scale or lr_scale[k].shape != params[k].shape]
    if bad or set(lr_scale) - set(names):
        raise ValueError(f"lr_scale must hold one tensor of each parameter's shape; it does "
                         f"not fit {bad or sorted(set(lr_scale) - set(names))}")
    return [f * lr_scale[k] for f, k in zip(factors, names, strict=True)]


def _log_schedule(settings: AdaptSettings):
    """``step -> whether it is logged`` (:meth:`AdaptSettings.log_steps`)."""
    return frozenset(settings.log_steps()).__contains__


def _record(result: AdaptResult, step: int, parts: dict, evaluate, params: Params) -> dict:
    """Append the log record of ``step`` (loss parts, then ``evaluate(params)``) to
    ``result``; a non-finite loss or error sets ``result.diverged_at``."""
    rec = {"step": step, "wall_time": result.wall_time}
    rec.update({("loss" if k == "total" else f"loss_{k}"): float(v) for k, v in parts.items()})
    if evaluate is not None:
        rec.update(evaluate(params))
    result.records.append(rec)
    if not all(np.isfinite(rec[k]).all() for k in ("loss", "u_rel_l2", "coef") if k in rec):
        result.diverged_at = step
    return rec


def _pad_diverged(result: AdaptResult, settings: AdaptSettings) -> None:
    """After a divergence, the rest of the log is NaN, so that every run has one step grid."""
    if result.diverged_at is None:
        return
    last = result.records[-1]
    nan = {k: (np.full_like(v, np.nan, dtype=float) if isinstance(v, np.ndarray)
               else float("nan")) for k, v in last.items()}
    result.records += [dict(nan, step=s, wall_time=last["wall_time"])
                       for s in settings.log_steps() if s > result.diverged_at]


class _Ticker:
    """A tqdm bar in interactive runs, otherwise about ten plain log lines per run."""

    def __init__(self, total: int, progress: bool | None, label: str):
        if progress is None:
            progress = sys.stderr.isatty() and bool(label)
        self.total, self.label, self.next_line = total, label, 0
        self.bar = None
        if progress:
            self.bar = tqdm(total=total, desc=label or "adapt", leave=False)

    def tick(self, n: int = 1):
        if self.bar is not None:
            self.bar.update(n)

    def note(self, step: int, loss: float):
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3e}", refresh=False)
        elif self.label and step >= self.next_line:
            log.info("%s step %d/%d loss %.3e", self.label, step, self.total, loss)
            self.next_line = step + max(self.total // 10, 1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def adapt_history(result: AdaptResult, pde: PDEFamily) -> xr.Dataset:
    """The log of :func:`adapt` as a Dataset with dims ``step`` (and ``coef``/``coef_err``)."""
    recs = result.records
    steps = np.array([r["step"] for r in recs])
    data = {
        "loss": ("step", [r["loss"] for r in recs], "total task loss"),
        "loss_residual": ("step", [r["loss_residual"] for r in recs], "PDE residual loss"),
        "loss_boundary": ("step", [r["loss_boundary"] for r in recs],
                          "boundary/initial condition loss"),
        "loss_data": ("step", [r["loss_data"] for r in recs], "observation misfit loss"),
        "wall_time": ("step", [r["wall_time"] for r in recs], "adaptation time"),
    }
    ds = xr.Dataset(
        {k: (dim, np.asarray(v, dtype=float), {"long_name": ln, "units": "s" if k == "wall_time"
                                                else "1"})
         for k, (dim, v, ln) in data.items()},
        coords={"step": ("step", steps, {"long_name": "optimiser step"})},
    )
    if recs and "u_rel_l2" in recs[0]:
        ds["u_rel_l2"] = ("step", np.array([r["u_rel_l2"] for r in recs]),
                          {"long_name": "relative L2 error of u on the reference grid",
                           "units": "1"})
        ds["coef_estimate"] = (("step", "coef"), np.stack([r["coef"] for r in recs]),
                      {"long_name": "estimated coefficients", "units": "1"})
        ds["coef_rel_err"] = (("step", "coef_err"), np.stack([r["coef_rel_err"] for r in recs]),
                              {"long_name": "relative coefficient error", "units": "1"})
        ds = ds.assign_coords(coef=("coef", np.array(pde.coef_names, dtype=object)),
                              coef_err=("coef_err", np.array(pde.error_names, dtype=object)))
    return ds
