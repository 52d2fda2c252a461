"""Many tasks adapted at once (``adapt.batch``, the GPU path) follow their serial runs.

Every test here runs on the CPU in float64: the batched program (``vmap`` over stacked
parameters and task data) computes each task's own gradient and update, so it must agree
with :func:`metapinn.adapt.adapt` run task by task to 1e-10 relative — the only
difference is the order of a few float64 sums (ε ≈ 1.1e-16), far below that over tens of
steps.
"""

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from metapinn.adapt import AdaptSettings, Evaluator, adapt, adapt_batch
from metapinn.config import compose, run_config
from metapinn.evaluate import batched, solve_tasks, tune_scratch_lr
from metapinn.loss import loss_parts
from metapinn.meta import get_method, method_settings
from metapinn.meta.base import Context
from metapinn.meta.hypernet import hyper_initialisation
from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.nets import scratch_params
from metapinn.pdes import FAMILIES
from metapinn.tasks import TaskSettings, generate_tasks, make_task, task_tensors, tasks_to_dataset

SMALL = ["model.hidden=[16,16]", "pde.n_collocation=200", "pde.n_boundary=40", "pde.n_obs=50",
         "adapt.steps=30", "adapt.log_every=10", "dtype=float64", "adapt.compile=false"]
LOGGED = ("loss", "loss_residual", "loss_boundary", "loss_data", "u_rel_l2", "coef",
          "coef_rel_err")


def _problem(pde, n=3, extra=()):
    rc = run_config(compose([f"pde={pde}", *SMALL, *extra]))
    tasks = [make_task(rc.pde, i, TaskSettings(n_obs=50)) for i in range(n)]
    data = [task_tensors(rc.pde, t, rc.n_collocation, rc.n_boundary, 0, rc.dtype) for t in tasks]
    evaluate = [Evaluator(rc.pde, t, rc.dtype) for t in tasks]
    return rc, data, evaluate, partial(loss_parts, pde=rc.pde, weights=rc.weights)


def _serial(rc, inits, data, evaluate, loss_fn, lrs, settings=None):
    settings = settings or rc.adapt
    return [adapt(p, lambda q, d=d: loss_fn(q, d), replace(settings, lr=lr), evaluate=e)
            for p, d, e, lr in zip(inits, data, evaluate, lrs, strict=True)]


def _assert_same_run(serial, batch, rtol=1e-10):
    assert batch.diverged_at == serial.diverged_at
    assert [r["step"] for r in batch.records] == [r["step"] for r in serial.records]
    for rs, rb in zip(serial.records, batch.records, strict=True):
        for k in LOGGED:
            np.testing.assert_allclose(rb[k], rs[k], rtol=rtol, atol=1e-14, err_msg=k)
    if serial.diverged_at is None:
        for k, v in serial.params.items():
            assert torch.allclose(batch.params[k], v, rtol=rtol, atol=1e-13), k


@pytest.mark.parametrize("pde", list(FAMILIES))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_batched_equals_serial_with_per_task_rates_and_inits(pde, optimizer):
    """Three tasks, each with its own learning rate and its own initialisation, under the
    decaying schedule: every logged value and the final parameters match the serial runs."""
    rc, data, evaluate, loss_fn = _problem(pde, extra=[f"adapt.optimizer={optimizer}"])
    lrs = [1e-3, 4e-3, 2e-2]
    if optimizer == "sgd":  # plain gradient steps scale with the loss's gradients
        lrs = [lr / 10 / rc.loss_scale for lr in lrs]
    inits = [scratch_params(rc, s) for s in range(3)]
    batch = adapt_batch(inits, loss_fn, data, rc.adapt, lrs=lrs, evaluate=evaluate)
    for s, b in zip(_serial(rc, inits, data, evaluate, loss_fn, lrs), batch, strict=True):
        assert s.diverged_at is None
        assert s.records[-1]["loss"] < s.records[0]["loss"]  # the runs moved
        _assert_same_run(s, b)
    # different starts and rates give different runs: the batch did not mix the tasks up
    assert len({round(b.records[-1]["loss"], 12) for b in batch}) == 3


def test_hypernetwork_initialisations_per_task():
    """Each task starts from the hypernetwork's prediction for its own observations."""
    rc, data, evaluate, loss_fn = _problem("burgers")
    ctx = Context(rc, method_settings("hypernet", inner_steps=1, inner_lr=0.01), 0, [])
    meta = get_method("hypernet").init_meta(ctx)
    inits = [hyper_initialisation(meta, d, ctx) for d in data]
    assert not torch.allclose(inits[0]["w0"], inits[1]["w0"])
    lrs = [rc.adapt.lr] * 3
    batch = adapt_batch(inits, loss_fn, data, rc.adapt, evaluate=evaluate)
    for s, b in zip(_serial(rc, inits, data, evaluate, loss_fn, lrs), batch, strict=True):
        _assert_same_run(s, b)


@pytest.mark.parametrize("pde", list(FAMILIES))
def test_a_diverging_task_keeps_its_nan_in_its_own_row(pde):
    """SGD at 1e30 on the middle task: it diverges at the step its serial run does, its log
    is NaN from there on, and the other two tasks finish exactly as they do alone."""
    rc, data, evaluate, loss_fn = _problem(pde, extra=["adapt.optimizer=sgd"])
    lrs = [1e-3, 1e30, 5e-3]
    inits = [scratch_params(rc, 0)] * 3
    batch = adapt_batch(inits, loss_fn, data, rc.adapt, lrs=lrs, evaluate=evaluate)
    serial = _serial(rc, inits, data, evaluate, loss_fn, lrs)
    assert serial[1].diverged_at is not None and serial[0].diverged_at is None
    for s, b in zip(serial, batch, strict=True):
        _assert_same_run(s, b)
    bad = batch[1]
    after = [r for r in bad.records if r["step"] > bad.diverged_at]
    assert after and all(np.isnan(r["loss"]) and np.isnan(r["u_rel_l2"]) for r in after)
    # the healthy tasks are those of a batch without the diverging one
    pair = adapt_batch([inits[0], inits[2]], loss_fn, [data[0], data[2]], rc.adapt,
                       lrs=[lrs[0], lrs[2]], evaluate=[evaluate[0], evaluate[2]])
    for alone, b in zip(pair, (batch[0], batch[2]), strict=True):
        _assert_same_run(alone, b, rtol=1e-12)


def test_batched_runs_refuse_what_they_cannot_do():
    rc, data, evaluate, loss_fn = _problem("burgers", n=2)
    inits = [scratch_params(rc, 0)] * 2
    with pytest.raises(ValueError, match="L-BFGS"):
        adapt_batch(inits, loss_fn, data, replace(rc.adapt, lbfgs_steps=5))
    with pytest.raises(ValueError, match="one data dict per initialisation"):
        adapt_batch(inits, loss_fn, data[:1], rc.adapt)
    with pytest.raises(ValueError, match="one positive learning rate per task"):
        adapt_batch(inits, loss_fn, data, rc.adapt, lrs=[1e-3, -1.0])
    # the default: batched on CUDA only, never with L-BFGS
    assert not batched(rc) and batched(replace(rc, device="cuda"))
    assert batched(replace(rc, adapt=replace(rc.adapt, batch=True)))
    assert not batched(replace(rc, device="cuda", adapt=replace(rc.adapt, lbfgs_steps=5)))
    assert not batched(replace(rc, device="cuda", adapt=replace(rc.adapt, batch=False)))


@pytest.fixture(scope="module")
def tasks_file(tmp_path_factory):
    rc = run_config(compose(["pde=cdr", *SMALL]))
    ts = TaskSettings(n_train=0, n_val=3, n_test=3, n_ood=0, n_obs=50, seed=0)
    path = tmp_path_factory.mktemp("tasks") / "cdr.nc"
    return write_netcdf(tasks_to_dataset(rc.pde, generate_tasks(rc.pde, ts), ts), path,
                        title="cdr tasks")


def test_adapt_tasks_and_tune_lr_write_the_serial_files(tasks_file, tmp_path):
    """The pipeline's two batched commands write what their serial runs write (the
    timings aside), including the tune-lr grid's diverged cells."""
    out = {}
    for flag in ("false", "true"):
        rc = run_config(compose(["pde=cdr", *SMALL, f"adapt.batch={flag}"]))
        assert batched(rc) == (flag == "true")
        a = solve_tasks(rc, tasks_file, "scratch", tmp_path / f"adapt_{flag}.nc")
        best = tune_scratch_lr(rc, tasks_file, [1e-3, 1e-2, 1e30], tmp_path / f"tune_{flag}.nc")
        out[flag] = read_netcdf(a).load(), read_netcdf(tmp_path / f"tune_{flag}.nc").load(), best
    (a0, t0, b0), (a1, t1, b1) = out["false"], out["true"]
    assert b0 == b1 == 1e-2
    for v in ("loss", "u_rel_l2", "coef_estimate", "coef_rel_err"):
        np.testing.assert_allclose(a1[v].values, a0[v].values, rtol=1e-10, err_msg=v)
    assert (a1["diverged"].values == a0["diverged"].values).all()
    np.testing.assert_allclose(t1["u_rel_l2"].values, t0["u_rel_l2"].values, rtol=1e-10)
    assert (t1["diverged"].values == t0["diverged"].values).all()
    assert t1["diverged"].values[2].all() and not t1["diverged"].values[:2].any()


@pytest.mark.slow
def test_compiled_batched_step_gives_the_eager_serial_steps():
    """With ``adapt.compile`` the batched step is one compiled graph; in float32 it
    agrees with the eager serial runs to round-off (tolerance as for the compiled serial
    step in test_adapt.py: rtol 1e-5 on parameters after 50 steps, 1e-4 on u_rel_l2)."""
    rc, data, evaluate, loss_fn = _problem("burgers", n=2, extra=["dtype=float32",
                                                                  "adapt.steps=50"])
    inits = [scratch_params(rc, s) for s in range(2)]
    lrs = [2e-3, 5e-3]
    compiled = replace(rc.adapt, compile=True)
    batch = adapt_batch(inits, loss_fn, data, compiled, lrs=lrs, evaluate=evaluate)
    assert batch[0].compile_time > 0
    for s, b in zip(_serial(rc, inits, data, evaluate, loss_fn, lrs), batch, strict=True):
        for k, v in s.params.items():
            assert torch.allclose(b.params[k], v, rtol=1e-5, atol=1e-6), k
        np.testing.assert_allclose([r["u_rel_l2"] for r in b.records],
                                   [r["u_rel_l2"] for r in s.records], rtol=1e-4)


def test_adapt_settings_batch_is_typed():
    assert AdaptSettings().batch is None
    rc = run_config(compose(["adapt.batch=yes"]))
    assert rc.adapt.batch is True
