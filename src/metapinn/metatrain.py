"""The ONE outer loop: meta-train any registered method (checkpoint/resume, validation).

Adam on the meta-parameters; each outer step draws a meta-batch of training tasks from a
generator seeded by (seed, step), so a resumed run draws exactly the batches an
uninterrupted one would and, with the optimiser state restored from the checkpoint,
reaches the same parameters. Writes ``init.pt`` (the meta-parameters and what they were
trained for) and ``history.nc`` (meta-loss and validation curves).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .errors import ConfigError
from .meta import get_method
from .meta.base import Context, compiles_inner, meta_task
from .ncio import atomic_write, write_netcdf
from .nets import Params
from .runconfig import RunConfig
from .settings import MethodSettings
from .tasks import load_tasks, rng_for, split_indices, task_from_dataset

log = logging.getLogger("metapinn")

STREAM_META = 4  # meta-batch draws
FORMAT = 1


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def build_context(rc: RunConfig, ms: MethodSettings, tasks_file: str | Path) -> Context:
    """The training and validation tasks of ``tasks_file`` as support/query pairs."""
    ds = load_tasks(tasks_file, rc.pde.name)
    train, val = split_indices(ds, ("train",)), split_indices(ds, ("val",))
    if not train:
        raise ValueError(f"{tasks_file} has no training tasks")
    if ms.meta_batch > len(train):
        raise ValueError(f"method.meta_batch={ms.meta_batch} exceeds the {len(train)} "
                         f"training tasks of {tasks_file}")
    return Context(rc, ms, rc.seed,
                   [meta_task(rc, task_from_dataset(ds, i), rc.seed) for i in train],
                   [meta_task(rc, task_from_dataset(ds, i), rc.seed) for i in val],
                   compile_inner=compiles_inner(rc, ms))


def validation_loss(method, meta: Params, ctx: Context) -> float:
    """Mean query loss on the ``val`` tasks after the inner steps (NaN without val tasks)."""
    if not ctx.val:
        return float("nan")
    losses = []
    for mt in ctx.val:
        init = method.initialisation({k: v.detach() for k, v in meta.items()}, mt.support, ctx)
        adapted = ctx.inner_adapt(init, mt.support, functional=False)
        with torch.no_grad():
            losses.append(float(ctx.loss(adapted, mt.query)))
    return float(np.mean(losses))


def meta_train(rc: RunConfig, ms: MethodSettings, tasks_file: str | Path, out_dir: str | Path,
               resume: bool = False, stop_after: int | None = None,
               second_order_cost: float = 1.0, meta_budget: float | None = None,
               budget_scale: float = 1.0) -> Path:
    """Meta-train ``ms.name`` on the training tasks; write ``init.pt`` and ``history.nc``.

    Args:
        rc: the run (family, network, dtype, device, seed).
        ms: meta-training settings.
        tasks_file: the family's tasks NetCDF.
        out_dir: folder for ``init.pt``, ``history.nc`` and ``checkpoint.pt``.
        resume: continue from ``checkpoint.pt`` if it was written for the same settings
            (:func:`checkpoint_key`: the method's settings, the run's, the configuration
            digest); a checkpoint of other settings is ignored, and the log names the
            settings that differ; without a checkpoint (a finished run removed it) the log
            says so. Either way the run starts afresh. The checkpoint is removed once
            ``init.pt`` and ``history.nc`` are written.
        stop_after: stop after this many outer steps in total (a checkpoint is written);
            for tests of resumption.
        second_order_cost, meta_budget, budget_scale: how compute is counted
            (``experiment.*``; the budget already multiplied by ``budget_scale``); recorded
            in ``history.nc`` with the gradient evaluations spent (``gradient_evals``, per
            outer step and in all).

    Returns:
        The path of ``init.pt``.
    """
    method = get_method(ms.name)
    if method.trainable and ms.outer_steps < 1:
        raise ConfigError(f"method.outer_steps={ms.outer_steps}: {ms.name} would write an "
                          f"untrained init.pt; set method.outer_steps ≥ 1")
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    ctx = build_context(rc, ms, tasks_file)
    if ctx.compile_inner:
        log.info("%s/%s: a long job (%d outer steps, see metapinn.meta.base."
                 "COMPILE_INNER_FROM): its graph-free steps run compiled%s", rc.pde.name,
                 ms.name, ms.outer_steps, "" if not ctx.vmap_graph_free else
                 " where they are not vmapped (method.vmap on CUDA)")
    t_start = time.perf_counter()
    records: list[dict] = []
    if not method.trainable:
        if resume:
            log.info("resume=true: %s has no outer loop and no checkpoint; fitting afresh",
                     ms.name)
        meta = method.fit(ctx)
        train_time = time.perf_counter() - t_start
    else:
        meta = {k: v.detach().clone().requires_grad_(True)
                for k, v in method.init_meta(ctx).items()}
        opt = torch.optim.Adam(list(meta.values()), lr=ms.outer_lr)
        start, train_time = 0, 0.0
        key = checkpoint_key(rc, ms, getattr(method, "revision", 1))
        ck = _usable_checkpoint(ckpt_path, key) if resume else None
        if ck is not None:
            with torch.no_grad():
                for k, v in ck["meta"].items():
                    meta[k].copy_(v.to(meta[k].device))
            opt.load_state_dict(ck["optimizer"])
            start, records, train_time = ck["step"], ck["records"], ck["train_time"]
        end = ms.outer_steps if stop_after is None else min(stop_after, ms.outer_steps)
        for step in range(start, end):
            t0 = time.perf_counter()
            rng = rng_for(rc.seed, step, STREAM_META)
            pick = rng.choice(len(ctx.train), ms.meta_batch, replace=False)
            batch = [ctx.train[i] for i in np.sort(pick)]
            # a method may return a third element: scalar diagnostics of the step (name →
            # value, described by its class attribute ``diagnostics``), kept in history.nc
            grads, loss, *extra = method.meta_grad({k: v.detach() for k, v in meta.items()},
                                                   batch, ctx)
            bad = [k for k, g in grads.items() if not torch.isfinite(g).all()]
            if not torch.isfinite(loss) or bad:
                raise FloatingPointError(
                    f"{rc.pde.name}/{ms.name}: meta-loss {float(loss):.3g} or meta-gradient "
                    f"of {bad or 'nothing'} is not finite at outer step {step + 1}; the inner "
                    f"loop diverged — lower method.inner_lr (now {ms.inner_lr}, scaled by "
                    f"1/pde.loss_scale for SGD) or method.outer_lr")
            for k, v in meta.items():
                v.grad = grads[k].detach().to(v.dtype)
            opt.step()
            train_time += time.perf_counter() - t0
            rec = {"step": step + 1, "meta_loss": float(loss), "val_loss": float("nan"),
                   "train_time": train_time}
            rec.update({k: float(v) for k, v in (extra[0] if extra else {}).items()})
            if (step + 1) % ms.val_every == 0 or step + 1 == ms.outer_steps:
                rec["val_loss"] = validation_loss(method, meta, ctx)
                log.info("%s/%s outer step %d/%d meta-loss %.3e val %.3e (%.1f s)",
                         rc.pde.name, ms.name, step + 1, ms.outer_steps, rec["meta_loss"],
                         rec["val_loss"], train_time)
            records.append(rec)
            if (step + 1) % ms.checkpoint_every == 0 or step + 1 == end:
                atomic_save({"method": ms.name, "pde": rc.pde.name, "step": step + 1,
                             "key": key,
                             "meta": {k: v.detach() for k, v in meta.items()},
                             "optimizer": opt.state_dict(), "records": records,
                             "train_time": train_time}, ckpt_path)
        if end < ms.outer_steps:
            return ckpt_path
    bad = [k for k, v in meta.items() if not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"{rc.pde.name}/{ms.name}: the meta-parameters {bad} are not "
                                 f"finite; nothing written")
    init_path = out_dir / "init.pt"
    atomic_save({"format": FORMAT, "pde": rc.pde.name, "method": ms.name,
                 "hidden": list(rc.hidden), "train_time": train_time, "digest": rc.digest,
                 "settings": dataclasses.asdict(ms),
                 "meta": {k: v.detach().cpu() for k, v in meta.items()}}, init_path)
    per_step = ms.gradient_evals_per_step(second_order_cost)
    hist = meta_history(records, train_time, per_step, getattr(method, "diagnostics", {}))
    hist.attrs.update({"pde": rc.pde.name, "method": ms.name, "seed": rc.seed,
                       "config_digest": rc.digest, "second_order_cost": second_order_cost,
                       "outer_steps": ms.outer_steps, "budget_scale": budget_scale,
                       # 1: the graph-free steps ran compiled to the end (their compile is
                       # in total_train_time_s); 0: eager (a short job, or a failed compile)
                       "graph_free_steps_compiled": int(ctx.compile_inner)})
    if hasattr(method, "history_attrs"):
        hist.attrs.update(method.history_attrs(ctx))
    if per_step is not None:
        hist.attrs["gradient_evals_per_outer_step"] = per_step
        hist.attrs["gradient_evals_spent"] = per_step * ms.outer_steps
    if meta_budget is not None:
        hist.attrs["meta_budget"] = float(meta_budget)
    log.info("%s/%s: %d outer steps, %s task-loss gradient evaluations (budget %s); val "
             "loss %s over the last quarter", rc.pde.name, ms.name, ms.outer_steps,
             "no" if per_step is None else f"{per_step * ms.outer_steps:.0f}",
             "none" if meta_budget is None else f"{meta_budget:.0f}",
             f"{hist.attrs['val_loss_change_last_quarter']:+.1%}"
             if "val_loss_change_last_quarter" in hist.attrs else "not measured")
    write_netcdf(hist, out_dir / "history.nc",
                 title=f"meta-training of {ms.name} on {rc.pde.name}", config=rc.yaml,
                 history=f"metapinn meta-train method={ms.name}")
    ckpt_path.unlink(missing_ok=True)  # init.pt and history.nc hold everything now
    return init_path


def checkpoint_key(rc: RunConfig, ms: MethodSettings, revision: int = 1) -> dict:
    """What a checkpoint must have been written for to be resumed: the method's settings
    and the revision of their meaning (the method class's ``revision``), the run's
    settings that shape meta-training, and the configuration digest."""
    return {"method": dataclasses.asdict(ms), "revision": revision, "pde": rc.pde.name,
            "hidden": list(rc.hidden), "seed": rc.seed, "dtype": str(rc.dtype),
            "device": rc.device.type, "n_collocation": rc.n_collocation,
            "n_boundary": rc.n_boundary,
            "weights": dataclasses.asdict(rc.weights), "loss_scale": rc.loss_scale,
            "adapt": dataclasses.asdict(rc.adapt), "tasks": dataclasses.asdict(rc.tasks),
            "digest": rc.digest}


def _usable_checkpoint(path: Path, key: dict) -> dict | None:
    """For ``resume=true``: the checkpoint at ``path`` if it was written for ``key``;
    otherwise ``None``, with a log line saying why the run starts afresh (no checkpoint, as
    after a finished run; an unreadable one; the settings that differ)."""
    if not path.exists():
        # a fresh pipeline job (resume=true, its outputs removed by Snakemake) is the normal
        # case; a finished run about to be overwritten is worth a warning
        if (path.parent / "init.pt").exists():
            log.warning("resume=true: no checkpoint in %s (its init.pt, of a finished run, "
                        "will be overwritten); starting afresh", path.parent)
        else:
            log.info("resume=true: no checkpoint in %s; starting afresh", path.parent)
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated file: start afresh rather than stop
        log.warning("ignoring unreadable checkpoint %s (%s); starting afresh", path,
                    type(e).__name__)
        return None
    old = ck.get("key", {}) if isinstance(ck, dict) else {}
    if old == key:
        log.info("resuming from outer step %d of %s", ck["step"], path)
        return ck
    log.warning("checkpoint %s was written for other settings (%s); starting afresh", path,
                ", ".join(_differing(old, key)) or "unknown")
    return None


def _differing(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differing(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} → {b!r}")
    return out


def meta_history(records: list[dict], train_time: float,
                 evals_per_step: float | None = None,
                 diagnostics: dict[str, tuple[str, str]] | None = None) -> xr.Dataset:
    """The meta-training curves of ``records`` as a Dataset over ``outer_step``; a method's
    per-step diagnostics (record keys beyond the standard ones) become variables too, with
    ``(long_name, units)`` from ``diagnostics`` where given."""
    steps = np.array([r["step"] for r in records], dtype=int)
    ds = xr.Dataset(
        {
            "meta_loss": ("outer_step", np.array([r["meta_loss"] for r in records], float),
                          {"long_name": "post-adaptation query loss of the meta-batch",
                           "units": "1"}),
            "val_loss": ("outer_step", np.array([r["val_loss"] for r in records], float),
                         {"long_name": "post-adaptation query loss on val tasks",
                          "units": "1"}),
            "train_time": ("outer_step", np.array([r["train_time"] for r in records], float),
                           {"long_name": "cumulative meta-training time", "units": "s"}),
        },
        coords={"outer_step": ("outer_step", steps, {"long_name": "outer step"})},
    )
    if evals_per_step is not None:
        ds["gradient_evals"] = ("outer_step", steps * float(evals_per_step),
                                {"long_name": "cumulative task-loss gradient evaluations",
                                 "units": "1"})
    described = diagnostics or {}
    standard = {"step", "meta_loss", "val_loss", "train_time"}
    for name in sorted({k for r in records for k in r} - standard):
        long_name, units = described.get(name, (name, "1"))
        ds[name] = ("outer_step", np.array([r.get(name, np.nan) for r in records], float),
                    {"long_name": long_name, "units": units})
    ds.attrs["total_train_time_s"] = float(train_time)
    change = val_change_last_quarter(steps, ds["val_loss"].values)
    if change is not None:
        ds.attrs["val_loss_change_last_quarter"] = change
    return ds


def val_change_last_quarter(steps: np.ndarray, val: np.ndarray) -> float | None:
    """How much the validation loss still moved in the last quarter of meta-training: the
    mean of the validations in the last quarter of the outer steps over the mean of those
    in the third quarter, minus 1 (−0.3: fell by 30 %, still training; near 0: plateaued).
    Means over a quarter, not single validations, so that the noise of one validation does
    not decide. None without a validation in each of the two quarters."""
    done = np.isfinite(val)
    if not done.any():
        return None
    s, v = steps[done], val[done]
    end = float(steps[-1])
    third = v[(s > 0.5 * end) & (s <= 0.75 * end)]
    last = v[s > 0.75 * end]
    if not (third.size and last.size):
        return None
    return float(last.mean() / third.mean() - 1.0)
