"""What every meta-learning method shares: settings, the meta-task data, the context.

A method is a small class with ``name``, ``settings`` (its :class:`MethodSettings`
subclass, the schema of its ``config/method/<name>.yaml``), ``trainable`` and four pure
functions over parameter dicts:

* ``init_meta(ctx)`` — the meta-parameters to train (for most methods the PINN
  initialisation φ itself, network and coefficient guess);
* ``meta_grad(meta, batch, ctx)`` — (gradient-like direction, meta-loss) for one
  meta-batch, handed to the outer optimiser of :mod:`metapinn.metatrain`, optionally with
  a third element: scalar diagnostics of the step (``name -> value``, described by the
  class attribute ``diagnostics``, e.g. iMAML's CG residual), kept in ``history.nc``;
* ``initialisation(meta, task_data, ctx)`` — the PINN parameters a new task is adapted
  from (the hypernetwork reads the task's observations here; the others return φ);
* ``fit(ctx)`` — for methods without an outer loop (scratch, transfer) the meta-parameters
  directly;
* optionally ``lr_scale(meta, ctx)`` — per-element multipliers of the adaptation's steps
  that the method learned (Meta-SGD); without it every element steps at the common rate.

The inner loop is always :func:`metapinn.adapt.adapt`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.func import vmap

from ..adapt import AdaptResult, adapt, compile_limit, warn_compile_failed
from ..errors import ConfigError
from ..loss import TaskData, loss_parts, stack
from ..ncio import describe_file, is_netcdf
from ..nets import Params, scratch_params
from ..runconfig import RunConfig
from ..settings import AdaptSettings, MethodSettings
from ..tasks import Task, rng_for, task_tensors
from . import get_method, method_settings

STREAM_QUERY = 2  # collocation points of the query loss (independent of the support's)
STREAM_OBS_SPLIT = 3  # which observations go to support and which to query
# graph-free gradient evaluations of a meta-training job from which they are compiled:
# enough to repay the compile even from a cold cache. Measured at quick's network size, one
# thread, Burgers, whole jobs of 12,000 evaluations eager / compiled cold / compiled warm:
# Reptile 40 / 30 / 18 s, LEAP 32 / 39 / 24 s, pretraining 49 / 45 / 33 s, so LEAP (the
# least gain per step) repays a cold compile from about 22,000 evaluations; at paper's size
# a step saves 2-4x more (benchmarks/meta_compile.py)
COMPILE_INNER_FROM = 25_000


@dataclass
class MetaTask:
    """A training task's support and query data (same shapes for every task)."""

    task: Task
    support: TaskData
    query: TaskData
    full: TaskData  # all observations, support collocation points (test-time loss)


@dataclass
class Context:
    """What a method needs besides its parameters: the run, the settings, the tasks."""

    rc: RunConfig
    ms: MethodSettings
    seed: int
    train: list[MetaTask] = field(default_factory=list)
    val: list[MetaTask] = field(default_factory=list)
    # inner runs without a graph (Reptile's, LEAP's, validation) use the compiled step
    # (see :func:`compiles_inner`); differentiable inner runs never do
    compile_inner: bool = False

    def loss(self, params: Params, data: TaskData) -> torch.Tensor:
        return loss_parts(params, data, self.rc.pde, self.rc.weights)["total"]

    def parts(self, params: Params, data: TaskData) -> dict[str, torch.Tensor]:
        return loss_parts(params, data, self.rc.pde, self.rc.weights)

    @property
    def inner_settings(self) -> AdaptSettings:
        """The inner loop of meta-training. Plain SGD steps are not scale-invariant, so
        their learning rate is divided by the family's loss scale (``pde.loss_scale``)."""
        inner = replace(self.ms.inner, compile=self.compile_inner)
        if inner.optimizer == "sgd" and self.rc.loss_scale != 1.0:
            inner = replace(inner, lr=inner.lr / self.rc.loss_scale)
        return inner

    @property
    def vmap_graph_free(self) -> bool:
        """Whether a method whose task gradients carry no graph through an inner loop
        (Reptile, the hypernetwork without inner steps) vmaps its meta-batch:
        ``method.vmap``, except on a CPU with the compiled inner step, where the tasks'
        compiled runs one after another are faster than one eager vmap program."""
        return self.ms.vmap and not (self.compile_inner and self.rc.device.type == "cpu")

    def inner_adapt(self, params: Params, data: TaskData, functional: bool = True,
                    settings: AdaptSettings | None = None,
                    lr_scale: Params | None = None) -> Params:
        """k inner steps on ``data`` with the shared inner loop (graph kept if functional;
        ``lr_scale``: per-element step multipliers, see :func:`metapinn.adapt.adapt`)."""
        return self.run_inner(params, lambda p: self.parts(p, data),
                              settings or self.inner_settings, differentiable=functional,
                              lr_scale=lr_scale).params

    def run_inner(self, params: Params, loss_fn, settings: AdaptSettings,
                  **kw) -> AdaptResult:
        """:func:`metapinn.adapt.adapt` without a log, as meta-training runs it. Where its
        step failed to compile (adapt warned and ran eagerly), the rest of the job runs
        eagerly too (``compile_inner`` off), so the attempt is not repeated per task."""
        result = adapt(params, loss_fn, settings, record_log=False, **kw)
        if result.compile_failed:
            self.compile_inner = False
        return result

    def call_compiled(self, fn, *args):
        """``fn(*args)``, as one ``torch.compile``d function where ``compile_inner``. Where
        compiling fails: a warning, ``compile_inner`` off for the rest of the job, and the
        eager ``fn`` (an error of ``fn`` itself is then raised by the eager call)."""
        if self.compile_inner:
            try:
                with compile_limit():
                    return torch.compile(fn, fullgraph=True, dynamic=False)(*args)
            except Exception as err:  # noqa: BLE001 - whatever the backend raises
                warn_compile_failed(err, "meta-training goes on eagerly")
                self.compile_inner = False
        return fn(*args)


def compiles_inner(rc: RunConfig, ms: MethodSettings) -> bool:
    """``Context.compile_inner`` for a meta-training job: ``adapt.compile`` is on and the
    job's outer loop spends at least :data:`COMPILE_INNER_FROM` task-loss gradient
    evaluations in steps without a graph through them (outer steps × meta-batch × the
    method's ``graph_free_evals``): Reptile's and LEAP's inner runs, iMAML's proximal
    solve, pretraining's and the hypernetwork's (without inner steps) gradients. MAML's,
    FOMAML's and Meta-SGD's inner loops are differentiable and stay eager, and so do their
    validation runs."""
    per_task = getattr(get_method(ms.name), "graph_free_evals", lambda _: 0.0)(ms)
    return bool(rc.adapt.compile
                and ms.outer_steps * ms.meta_batch * per_task >= COMPILE_INNER_FROM)


def meta_task(rc: RunConfig, task: Task, seed: int) -> MetaTask:
    """Support/query split of one task: disjoint halves of the observations and two
    independent sets of collocation/boundary points."""
    full = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, seed, rc.dtype,
                        rc.device)
    n = len(task.obs_values)
    if n < 2:
        raise ValueError("meta-training needs ≥ 2 observations per task (support and query)")
    perm = rng_for(seed, task.index, STREAM_OBS_SPLIT).permutation(n)
    half = n // 2
    s_idx = torch.as_tensor(np.sort(perm[:half]), device=rc.device)
    q_idx = torch.as_tensor(np.sort(perm[half:2 * half]), device=rc.device)
    query_pts = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, seed, rc.dtype,
                             rc.device, stream=STREAM_QUERY)
    support = dict(full, obs_points=full["obs_points"][s_idx],
                   obs_values=full["obs_values"][s_idx])
    query = dict(query_pts, obs_points=full["obs_points"][q_idx],
                 obs_values=full["obs_values"][q_idx])
    return MetaTask(task, support, query, full)


def params_like(params: Params) -> Params:
    return {k: v.detach().clone() for k, v in params.items()}


def batch_mean_grad(task_grad, meta: Params, batch: list[MetaTask], use_vmap: bool):
    """Mean over the meta-batch of ``task_grad(meta, support, query) -> (grads, loss)``;
    with ``vmap`` over stacked task data or as a plain per-task loop (the reference)."""
    if use_vmap:
        grads, losses = vmap(task_grad, in_dims=(None, 0, 0))(
            meta, stack([t.support for t in batch]), stack([t.query for t in batch]))
        return {k: v.mean(0) for k, v in grads.items()}, losses.mean()
    total, losses = None, []
    for t in batch:
        g, loss = task_grad(meta, t.support, t.query)
        total = g if total is None else {k: total[k] + g[k] for k in g}
        losses.append(loss)
    return {k: v / len(batch) for k, v in total.items()}, torch.stack(losses).mean()


class InitialisationMethod:
    """A method that learns one initialisation φ (network + coefficient guess) for every
    task: starts from the scratch initialisation, and hands φ itself to each new task."""

    trainable = True
    settings = MethodSettings
    # bumped when the meaning of a setting changes (iMAML's λ became relative to
    # pde.loss_scale): a checkpoint written under another revision is not resumed
    revision = 1

    def history_attrs(self, ctx: Context) -> dict[str, float]:
        """Derived settings worth keeping in ``history.nc``'s attributes (none here)."""
        return {}

    def init_meta(self, ctx: Context) -> Params:
        return scratch_params(ctx.rc, ctx.seed)

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        return params_like(meta)


def _saved_settings(path: Path, method: str, saved: dict | None):
    """The method's settings as meta-training saved them in ``init.pt`` (what a new task's
    initialisation may depend on, e.g. the conditional PINN's θ-fit steps); the defaults
    for a file without them."""
    if not saved:
        return method_settings(method)
    try:
        return method_settings(method, **{k: v for k, v in saved.items() if k != "name"})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: its saved {method} settings do not fit this version of "
                          f"metapinn ({e}); meta-train it again") from None


@dataclass
class Initialiser:
    """What an ``init.pt`` gives a new task: ``self(task_data)`` its initial parameters,
    and ``lr_scale`` the per-element step multipliers the method learned (``None``: the
    common rate; see :func:`metapinn.adapt.adapt`)."""

    params_for: Callable[[TaskData], Params]
    lr_scale: Params | None = None
    settings: MethodSettings | None = None  # of the method that made it (from init.pt)

    def __call__(self, data: TaskData) -> Params:
        return self.params_for(data)


def load_init(path: str | Path, rc: RunConfig, method: str | None = None) -> Initialiser:
    """Load an ``init.pt`` written by meta-training, checking that it fits this run.

    Args:
        path: the file.
        rc: the run it will initialise (family, network widths).
        method: if given, the method the file must have been trained with.

    Returns:
        An :class:`Initialiser`: called with a task's data, its initialisation (the
        hypernetwork's depends on the task's observations; the others' do not); its
        ``lr_scale`` the learned step multipliers, if the method has them.

    Raises:
        ConfigError: the file is missing, unreadable, or made for another run; the message
            names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no initialisation file {path}")
    if is_netcdf(path):  # torch.load's own message would suggest weights_only=False
        raise ConfigError(f"{path} is {describe_file(path)}, not an init.pt checkpoint: init= "
                          f"takes the init.pt that metapinn meta-train writes "
                          f"(meta/<pde>/<method>/seed<s>/init.pt)")
    try:
        blob = torch.load(path, map_location=rc.device, weights_only=True)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        detail = str(e).splitlines()[0] if str(e) else "no detail"
        if "weights_only" in str(e) or "Weights only" in str(e):  # not advice for us
            detail = "not a file of tensors and plain data saved by torch.save"
        raise ConfigError(f"{path} is not a readable init.pt ({type(e).__name__}: "
                          f"{detail})") from None
    if not isinstance(blob, dict) or not {"pde", "method", "hidden", "meta"} <= set(blob):
        raise ConfigError(f"{path} is not an init.pt written by metapinn meta-train")
    if blob["pde"] != rc.pde.name:
        raise ConfigError(f"{path} was trained for pde {blob['pde']!r}, not {rc.pde.name!r}")
    if list(blob["hidden"]) != list(rc.hidden):
        raise ConfigError(f"{path} has hidden layers {blob['hidden']}, but this run has "
                          f"model.hidden={list(rc.hidden)}")
    if method is not None and blob["method"] != method:
        raise ConfigError(f"{path} was trained with method {blob['method']!r}, not "
                          f"method={method}; pass method={blob['method']} or another init=")
    trained = blob["method"]
    meta = {k: v.to(dtype=rc.dtype, device=rc.device) for k, v in blob["meta"].items()}
    bad = [k for k, v in meta.items() if not torch.isfinite(v).all()]
    if bad:
        raise ConfigError(f"{path}: non-finite values in {bad}; the meta-training that wrote "
                          f"it diverged")
    ctx = Context(rc, _saved_settings(path, trained, blob.get("settings")), rc.seed)
    impl = get_method(trained)
    expected = {k: tuple(v.shape) for k, v in scratch_params(rc, 0).items()}

    def init_fn(data: TaskData) -> Params:
        try:
            params = impl.initialisation(meta, data, ctx)
        except (RuntimeError, KeyError) as e:
            raise ConfigError(f"{path}: its tensors do not make a {trained} initialisation "
                              f"of model.hidden={list(rc.hidden)} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0]})") from None
        found = {k: tuple(v.shape) for k, v in params.items()}
        if found != expected:
            diff = sorted(k for k in expected.keys() | found.keys()
                          if expected.get(k) != found.get(k))
            raise ConfigError(
                f"{path}: its tensors do not match the model.hidden={list(rc.hidden)} it "
                f"declares for {rc.pde.name}: " + ", ".join(
                    f"{k} {found.get(k)} (expected {expected.get(k)})" for k in diff[:4]))
        return params

    scale = impl.lr_scale(meta, ctx) if hasattr(impl, "lr_scale") else None
    return Initialiser(init_fn, scale, ctx.ms)
