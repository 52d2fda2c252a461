"""The inner loop: functional optimisers, logging, timing, L-BFGS, differentiability."""

import time
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from metapinn.adapt import (
    COMPILED_VARIANTS,
    EVAL_COMPILE_FROM,
    AdaptSettings,
    CompiledSolution,
    Evaluator,
    Optimizer,
    adapt,
    adapt_history,
)
from metapinn.config import compose, run_config
from metapinn.errors import ConfigError
from metapinn.evaluate import compiled_evaluation, solve_task
from metapinn.loss import loss_parts, solution
from metapinn.nets import scratch_params
from metapinn.pdes import FAMILIES
from metapinn.tasks import TaskSettings, make_task, task_tensors


def _quadratic():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=g, dtype=torch.float64)
    A = A @ A.T + torch.eye(5, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)

    def loss_fn(p):
        x = p["x"]
        return {"total": 0.5 * x @ A @ x - b @ x}

    return A, b, loss_fn


def test_functional_adam_equals_torch_optim_adam():
    _, _, loss_fn = _quadratic()
    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64)
    settings = AdaptSettings(steps=25, lr=0.05, lr_decay=1.0, compile=False)
    ours = adapt({"x": x0}, loss_fn, settings).params["x"]
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(25):
        opt.zero_grad()
        loss_fn({"x": x})["total"].backward()
        opt.step()
    assert torch.allclose(ours, x.detach(), rtol=1e-12, atol=1e-14)


def test_sgd_and_exponential_schedule():
    A, b, loss_fn = _quadratic()
    s = AdaptSettings(steps=3, lr=0.1, lr_decay=0.5, optimizer="sgd", compile=False)
    x = torch.zeros(5, dtype=torch.float64)
    expected = x.clone()
    for k in range(3):
        expected = expected - 0.1 * 0.5 ** (k / 3) * (A @ expected - b)
    assert torch.allclose(adapt({"x": x}, loss_fn, s).params["x"], expected, rtol=1e-13)
    assert s.lr_at(3) == pytest.approx(0.05)


def test_log_schedule_and_adapt_history():
    """Logged: every step to 10, then steps at most 10 % apart, every log_every-th and the
    last, so that steps to a threshold have ≤ 10 % resolution."""
    _, _, loss_fn = _quadratic()
    s = AdaptSettings(steps=23, lr=0.01, log_every=10, compile=False)
    r = adapt({"x": torch.ones(5, dtype=torch.float64)}, loss_fn, s)
    assert [rec["step"] for rec in r.records] == list(s.log_steps()) == [*range(21), 22, 23]
    long = AdaptSettings(steps=5000, log_every=1000).log_steps()
    assert long[:11] == tuple(range(11)) and long[-1] == 5000
    assert all(b <= 1.1 * a for a, b in zip(long[10:], long[11:], strict=False))
    assert {1000, 2000, 3000, 4000} <= set(long) and len(long) < 100
    # the loss logged at step k is the loss of the parameters after k updates
    assert r.records[-1]["loss"] == pytest.approx(float(loss_fn(r.params)["total"]))
    assert r.records[0]["loss"] == pytest.approx(float(loss_fn(
        {"x": torch.ones(5, dtype=torch.float64)})["total"]))


def test_wall_time_excludes_evaluation():
    _, _, loss_fn = _quadratic()
    naps = []

    def slow_eval(p):
        time.sleep(0.05)
        naps.append(1)
        return {}

    t0 = time.perf_counter()
    s = AdaptSettings(steps=20, log_every=2, compile=False)
    r = adapt({"x": torch.ones(5, dtype=torch.float64)}, loss_fn, s, evaluate=slow_eval)
    elapsed = time.perf_counter() - t0
    assert len(naps) == len(s.log_steps()) == 21
    assert r.wall_time < elapsed - 0.9 * 0.05 * len(naps)
    assert [rec["wall_time"] for rec in r.records] == sorted(rec["wall_time"]
                                                              for rec in r.records)


def test_lbfgs_phase_reaches_the_quadratic_minimum():
    A, b, loss_fn = _quadratic()
    x_star = torch.linalg.solve(A, b)
    r = adapt({"x": torch.zeros(5, dtype=torch.float64)}, loss_fn,
              AdaptSettings(steps=5, lr=0.01, lbfgs_steps=30, log_every=5, compile=False))
    assert torch.allclose(r.params["x"], x_star, atol=1e-6)
    adam_only = adapt({"x": torch.zeros(5, dtype=torch.float64)}, loss_fn,
                      AdaptSettings(steps=35, lr=0.01, compile=False)).params["x"]
    assert not torch.allclose(adam_only, x_star, atol=1e-2)  # L-BFGS did the work
    assert r.records[-1]["step"] == 35
    # zero tolerances: it makes every iteration asked for while the gradient is not
    # exactly zero, and none from a point where it is
    assert r.lbfgs_iterations == 30
    flat = adapt({"x": torch.zeros(3, dtype=torch.float64)},
                 lambda p: {"total": (p["x"] ** 2).sum()},
                 AdaptSettings(steps=0, lbfgs_steps=10, compile=False), record_log=False)
    assert flat.lbfgs_iterations == 0
    settings = AdaptSettings(steps=5, lr=0.01, lbfgs_steps=30, log_every=5, compile=False)
    assert [rec["step"] for rec in r.records] == list(settings.log_steps())
    with pytest.raises(ValueError, match="L-BFGS"):
        adapt({"x": torch.zeros(5)}, loss_fn,
              AdaptSettings(steps=1, lbfgs_steps=1, compile=False),
              differentiable=True)


def test_lbfgs_line_search_overflow_counts_as_diverged(monkeypatch, caplog):
    """torch's L-BFGS raises (rather than returning inf) when its line search's step size
    outgrows the dtype, as it did for scratch_lbfgs tuned at a rate of 0.16 on CDR: the
    run then counts as diverged from the next logged step on, and the solve returns."""
    A, b, loss_fn = _quadratic()
    calls = []

    def overflowing_step(self, closure):
        calls.append(1)
        if len(calls) == 2:  # the second L-BFGS call, between logged steps 10 and 15
            raise RuntimeError("value cannot be converted to type float without overflow")
        return real_step(self, closure)

    real_step = torch.optim.LBFGS.step
    monkeypatch.setattr(torch.optim.LBFGS, "step", overflowing_step)
    settings = AdaptSettings(steps=5, lr=0.01, lbfgs_steps=20, log_every=5, dense_log=False,
                             compile=False)
    with caplog.at_level("WARNING", logger="metapinn"):
        r = adapt({"x": torch.zeros(5, dtype=torch.float64)}, loss_fn, settings)
    assert "line search overflowed" in caplog.text
    steps = [rec["step"] for rec in r.records]
    assert steps == list(settings.log_steps()) == [0, 5, 10, 15, 20, 25]
    losses = [rec["loss"] for rec in r.records]
    assert np.isfinite(losses[:3]).all() and np.isnan(losses[3:]).all()
    assert r.diverged_at == 15 and len(calls) == 2
    # any other error from L-BFGS is not swallowed
    monkeypatch.setattr(torch.optim.LBFGS, "step",
                        lambda self, c: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        adapt({"x": torch.zeros(5, dtype=torch.float64)}, loss_fn, settings)


def test_differentiable_inner_loop_gradient_matches_finite_differences():
    """d/dφ of the loss after k SGD steps (MAML's gradient) against central FD."""
    A, b, loss_fn = _quadratic()
    s = AdaptSettings(steps=3, lr=0.05, lr_decay=1.0, optimizer="sgd", compile=False)

    def after(x0):
        return loss_fn(adapt({"x": x0}, loss_fn, s, differentiable=True).params)["total"]

    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_(True)
    g = torch.autograd.grad(after(x0), x0)[0]
    eps = 1e-6
    fd = torch.stack([(after(x0.detach() + eps * e) - after(x0.detach() - eps * e)) / (2 * eps)
                      for e in torch.eye(5, dtype=torch.float64)])
    assert torch.allclose(g, fd, rtol=1e-7, atol=1e-9)
    # closed form: ∏(I − αA) (Aφ_k − b)
    M = torch.eye(5, dtype=torch.float64) - 0.05 * A
    xk = x0.detach()
    for _ in range(3):
        xk = xk - 0.05 * (A @ xk - b)
    assert torch.allclose(g, M @ M @ M @ (A @ xk - b), rtol=1e-10)


def test_settings_validation_names_the_key():
    with pytest.raises(ValueError, match="adapt.steps"):
        AdaptSettings(steps=-1, compile=False)
    with pytest.raises(ValueError, match="adapt.optimizer"):
        AdaptSettings(optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr_decay"):
        AdaptSettings(lr_decay=2.0)
    assert Optimizer("adam").init([torch.zeros(2)])[0] == 0


def test_short_pinn_solve_lowers_the_loss_and_logs_errors():
    rc = run_config(compose(["pde=burgers", "model.hidden=[16,16]", "adapt.steps=60",
                             "adapt.compile=false",
                             "adapt.log_every=20", "pde.n_collocation=256"]))
    task = make_task(rc.pde, 0, TaskSettings(n_obs=100))
    r = solve_task(rc, task, scratch_params(rc, 0))
    ds = adapt_history(r, rc.pde)
    assert list(ds.step.values) == list(rc.adapt.log_steps())
    assert {0, 20, 40, 60} <= set(ds.step.values)
    assert ds.loss.values[-1] < 0.5 * ds.loss.values[0]
    assert ds.coef_rel_err.dims == ("step", "coef_err")
    ev = Evaluator(rc.pde, task)(r.params)
    assert ev["u_rel_l2"] == pytest.approx(float(ds.u_rel_l2[-1]))
    # the scratch initial guess is the prior's geometric mean
    assert ds.coef_estimate.values[0, 0] == pytest.approx(np.sqrt(0.01 * 0.1), rel=1e-6)


def test_coefficient_learning_rate_factor():
    """With SGD, the coefficient entry moves coef_lr_factor times further per step."""
    def loss_fn(p):
        return {"total": (p["w"] ** 2).sum() + (p["coef"] ** 2).sum()}

    p0 = {"w": torch.ones(3, dtype=torch.float64), "coef": torch.ones(2, dtype=torch.float64)}
    for foreach_path in (False, True):
        s = AdaptSettings(steps=1, lr=0.1, optimizer="sgd", coef_lr_factor=3.0, compile=False)
        out = adapt(p0, loss_fn, s, differentiable=not foreach_path, record_log=False).params
        assert torch.allclose(out["w"], torch.full((3,), 1 - 0.1 * 2, dtype=torch.float64))
        assert torch.allclose(out["coef"], torch.full((2,), 1 - 0.3 * 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="coef_lr_factor"):
        AdaptSettings(coef_lr_factor=0)


@pytest.mark.slow
@pytest.mark.parametrize("pde", list(FAMILIES))
def test_compiled_step_gives_the_eager_steps(pde):
    """The compiled step (loss, gradient and Adam update in one graph) reproduces the eager
    step in float32. Tolerance: the two compute the same arithmetic in another order, so
    each step differs by float32 round-off (ε ≈ 1.2e-7 relative); Adam's normalised
    updates do not amplify it, and over 50 steps the parameters may drift by at most
    ~50 ε relative: rtol 1e-5 with atol 1e-6 (measured: ≤ 1.5e-7). The u_rel_l2 curves of
    the same solve agree to 1e-4 relative (measured: ≤ 2e-7)."""
    base = [f"pde={pde}", "model.hidden=[32,32,32]", "pde.n_collocation=1000",
            "adapt.steps=50", "adapt.log_every=10", "dtype=float32"]
    rc = run_config(compose([*base, "adapt.compile=false"]))
    rc_c = run_config(compose([*base, "adapt.compile=true"]))
    task = make_task(rc.pde, 0, TaskSettings(n_obs=100))
    eager = solve_task(rc, task, scratch_params(rc, 0))
    compiled = solve_task(rc_c, task, scratch_params(rc_c, 0))
    assert eager.compile_time == 0 < compiled.compile_time
    for k in eager.params:
        assert torch.allclose(eager.params[k], compiled.params[k], rtol=1e-5, atol=1e-6), k
    u_e = np.array([r["u_rel_l2"] for r in eager.records])
    u_c = np.array([r["u_rel_l2"] for r in compiled.records])
    np.testing.assert_allclose(u_c, u_e, rtol=1e-4)
    assert u_e[-1] < u_e[0]  # the solve moved


@pytest.mark.slow
def test_compiled_lbfgs_gives_the_eager_lbfgs_iterates(monkeypatch):
    """The L-BFGS phase with ``adapt.compile`` takes loss and gradient from one compiled
    function; in float64 it follows the eager phase's iterates. Tolerance: the two differ
    by float64 round-off per evaluation (ε ≈ 2.2e-16), which L-BFGS's curvature pairs
    amplify over the iterations (measured on this problem after 40 iterations: ≤ 1e-10
    relative in the parameters); rtol 1e-8 leaves room for other CPUs and is still far
    below any difference a wrong gradient would make (the loss falls 50× here)."""
    import metapinn.adapt as adapt_module

    monkeypatch.setattr("metapinn.adapt.LBFGS_COMPILE_FROM", 1)
    real_warm_up = adapt_module._warm_up

    # adapt's clock, with a compile that takes 1,000 s on it: were the compile counted in
    # wall_time, wall_time would exceed 1,000 s (the iterations take seconds)
    offset = [0.0]

    class Clock:
        @staticmethod
        def perf_counter():
            return time.perf_counter() + offset[0]

    monkeypatch.setattr(adapt_module, "time", Clock)

    def slow_warm_up(compiled, eager, args, like):
        def slow(*a):
            offset[0] += 1000.0
            return compiled(*a)

        step, seconds = real_warm_up(slow, eager, args, like)
        return (compiled if step is slow else step), seconds

    monkeypatch.setattr(adapt_module, "_warm_up", slow_warm_up)
    # no Adam steps: the compile time measured is the L-BFGS closure's alone
    base = ["pde=burgers", "model.hidden=[16,16]", "pde.n_collocation=300", "dtype=float64",
            "adapt.steps=0", "adapt.lbfgs_steps=40", "adapt.log_every=10"]
    runs = {}
    for flag in ("false", "true"):
        rc = run_config(compose([*base, f"adapt.compile={flag}"]))
        task = make_task(rc.pde, 0, TaskSettings(n_obs=100))
        runs[flag] = solve_task(rc, task, scratch_params(rc, 0))
    eager, compiled = runs["false"], runs["true"]
    assert eager.compile_time == 0 and compiled.compile_time >= 1000.0
    assert compiled.wall_time < 1000.0  # the compile is timed apart
    assert eager.lbfgs_iterations == compiled.lbfgs_iterations == 40
    for k in eager.params:
        assert torch.allclose(eager.params[k], compiled.params[k], rtol=1e-8, atol=1e-10), k
    loss = [r["loss"] for r in compiled.records]
    assert loss[-1] < 0.1 * loss[0]
    np.testing.assert_allclose(loss, [r["loss"] for r in eager.records], rtol=1e-8)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_untimed_compiled_run_follows_the_eager_one(optimizer):
    """A run without a log (meta-training's inner runs) compiles on its first real step and
    reuses that step's result: with a decaying rate and the trajectory LEAP keeps, every
    iterate, loss and gradient is the eager run's to float64 round-off, and there are as
    many steps (an off-by-one in the step counter or the schedule would show at once)."""
    A, b, loss_fn = _quadratic()
    x0 = {"x": torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)}
    runs = {}
    for flag in (False, True):
        s = AdaptSettings(steps=7, lr=0.05, lr_decay=0.2, optimizer=optimizer,
                          coef_lr_factor=1.0, compile=flag)
        runs[flag] = adapt(x0, loss_fn, s, record_log=False, keep_trajectory=True)
    eager, fused = runs[False], runs[True]
    assert fused.compile_time > 0 and not fused.compile_failed
    assert len(fused.trajectory) == len(eager.trajectory) == 8
    for (p_e, f_e, g_e), (p_c, f_c, g_c) in zip(eager.trajectory, fused.trajectory,
                                                strict=True):
        assert torch.allclose(p_c["x"], p_e["x"], rtol=1e-12, atol=1e-14)
        assert torch.allclose(f_c, f_e, rtol=1e-12)
        if g_e is not None:
            assert torch.allclose(g_c["x"], g_e["x"], rtol=1e-12, atol=1e-14)
            assert torch.allclose(g_c["x"], A @ p_e["x"] - b, rtol=1e-12, atol=1e-14)
    assert torch.allclose(fused.params["x"], eager.params["x"], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(eager.params["x"], x0["x"])


def test_a_process_compiles_more_problems_than_dynamos_default_limit(caplog):
    """Every compiled step is the same Python code, so TorchDynamo counts each new problem
    as a recompile of it; past its default limit of 8 the next problem's compile failed
    (and the run fell back to eager with a warning). Twelve problems of distinct shapes
    in one process all compile."""
    assert COMPILED_VARIANTS > 12
    for n in range(2, 14):
        a = torch.linspace(1.0, 2.0, n, dtype=torch.float64)

        def loss_fn(p, a=a):
            return {"total": 0.5 * (a * p["x"] ** 2).sum()}

        s = AdaptSettings(steps=3, lr=0.1, lr_decay=1.0, optimizer="sgd",
                          coef_lr_factor=1.0, compile=True)
        r = adapt({"x": torch.ones(n, dtype=torch.float64)}, loss_fn, s, record_log=False)
        assert not r.compile_failed, n
        # three SGD steps on a diagonal quadratic: x = (1 − 0.1 a)³ exactly
        assert torch.allclose(r.params["x"], (1 - 0.1 * a) ** 3, rtol=1e-12)
    assert "torch.compile failed" not in caplog.text


def test_a_diverging_run_stops_and_keeps_the_step_grid():
    """Case 5 of issue 9: a non-finite loss stops the run at the first logged step that
    shows it; the log keeps every logged step (NaN from there on), so that diverged and
    converged runs share one step grid."""
    _, _, loss_fn = _quadratic()
    s = AdaptSettings(steps=40, lr=1e30, optimizer="sgd", log_every=10, compile=False)
    r = adapt({"x": torch.ones(5, dtype=torch.float64)}, loss_fn, s)
    assert r.diverged_at in s.log_steps() and r.diverged_at > 0
    assert [rec["step"] for rec in r.records] == list(s.log_steps())
    assert np.isfinite(r.records[0]["loss"])
    stop = list(s.log_steps()).index(r.diverged_at)
    assert all(np.isfinite(rec["loss"]) for rec in r.records[:stop])
    assert not np.isfinite(r.records[stop]["loss"])  # inf or NaN where it stopped
    assert all(np.isnan(rec["loss"]) for rec in r.records[stop + 1:])  # the padding
    ok = adapt({"x": torch.ones(5, dtype=torch.float64)}, loss_fn,
               AdaptSettings(steps=40, lr=0.01, optimizer="sgd", log_every=10, compile=False))
    assert ok.diverged_at is None and len(ok.records) == len(s.log_steps())


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_traceable_update_is_the_fused_update(name):
    """Optimizer.apply (the compiled and vmapped path: no Python state, bias corrections
    folded into tensors) computes what the foreach kernels compute, step after step."""
    g = torch.Generator().manual_seed(1)
    params = [torch.randn(4, 3, generator=g, dtype=torch.float64),
              torch.randn(3, generator=g, dtype=torch.float64)]
    opt, factors = Optimizer(name), [1.0, 10.0]
    fused, state = [p.clone() for p in params], opt.init(params)
    traced, moments = [p.clone() for p in params], opt.init(params)[1:]
    for t in range(1, 6):
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        lr = 0.01 * 0.9 ** t
        fused, state = opt.update(fused, grads, state, [lr * f for f in factors])
        step, c2 = opt.scalars(t, lr)
        scalar = partial(torch.tensor, dtype=torch.float64)
        traced, moments = opt.apply(traced, grads, moments, scalar(step), scalar(c2), factors)
        for a, b in zip(fused, traced, strict=True):
            assert torch.allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("phase", [dict(steps=20, lr=0.05), dict(steps=0, lbfgs_steps=20),
                                   dict(steps=20, lr=0.05, lbfgs_steps=20)])
def test_a_step_that_cannot_compile_falls_back_to_eager(phase, monkeypatch, caplog):
    """Where torch.compile fails (here: a loss that leaves the graph for a Python number),
    the run warns once and takes the eager step (Adam, the L-BFGS closure, or both),
    giving the eager run's result."""
    monkeypatch.setattr("metapinn.adapt.LBFGS_COMPILE_FROM", 1)
    A, b, loss_fn = _quadratic()

    def leaky(p):
        if float(p["x"].detach().sum()) > 1e9:  # data-dependent Python control flow: no full graph
            return {"total": p["x"].sum()}
        return loss_fn(p)

    s = AdaptSettings(log_every=10, compile=True, **phase)
    with caplog.at_level("WARNING", logger="metapinn"):
        r = adapt({"x": torch.ones(5, dtype=torch.float64)}, leaky, s)
    assert caplog.text.count("torch.compile failed") == 1 and r.compile_time == 0
    eager = adapt({"x": torch.ones(5, dtype=torch.float64)}, loss_fn,
                  AdaptSettings(log_every=10, compile=False, **phase))
    assert torch.allclose(r.params["x"], eager.params["x"], rtol=1e-12)
    if phase.get("lbfgs_steps"):  # L-BFGS reached the quadratic's minimum
        assert torch.allclose(r.params["x"], torch.linalg.solve(A, b), atol=1e-8)


@pytest.mark.parametrize("name", ["burgers", "darcy"])
def test_strided_evaluation_is_the_error_on_the_coarser_grid(name):
    """adapt.eval_stride=2: u_rel_l2 on the nodes (i, j) with i, j even, computed here
    independently from the grid's coordinate arrays, and close to the full-grid error."""
    rc = run_config(compose([f"pde={name}", "model.hidden=[16,16]", "adapt.steps=30",
                             "adapt.compile=false", "adapt.eval_stride=2",
                             "pde.n_collocation=256"]))
    task = make_task(rc.pde, 0, TaskSettings(n_obs=100))
    r = solve_task(rc, task, scratch_params(rc, 0))
    g, (d0, d1) = rc.pde.grid(), rc.pde.grid_dims
    c0, c1 = np.meshgrid(g[d0][::2], g[d1][::2], indexing="ij")
    cols = {d0: c0.ravel(), d1: c1.ravel()}
    pts = torch.as_tensor(np.stack([cols[k] for k in rc.pde.inputs], axis=1), dtype=rc.dtype)
    with torch.no_grad():
        u = solution(r.params, pts, rc.pde).double().numpy()
    ref = task.u_ref[::2, ::2].ravel()
    assert len(ref) == len(g[d0][::2]) * len(g[d1][::2]) < task.u_ref.size / 3.5
    expected = np.linalg.norm(u - ref) / np.linalg.norm(ref)
    assert r.records[-1]["u_rel_l2"] == pytest.approx(expected, rel=1e-6)
    full = Evaluator(rc.pde, task)(r.params)["u_rel_l2"]
    assert r.records[-1]["u_rel_l2"] == pytest.approx(full, rel=0.05)
    assert r.records[-1]["u_rel_l2"] != full


def _numpy_u(params, points: np.ndarray, bounds, darcy: bool) -> np.ndarray:
    """The PINN's u written out in NumPy (float64): inputs mapped to [−1, 1], tanh hidden
    layers, and Darcy's factor 16 x(1−x) y(1−y)."""
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    h = 2.0 * (points - lo) / (hi - lo) - 1.0
    n = sum(k.startswith("w") for k in params)
    for i in range(n):
        h = h @ params[f"w{i}"].numpy().T + params[f"b{i}"].numpy()
        h = np.tanh(h) if i < n - 1 else h
    u = h[:, 0]
    if darcy:
        x, y = points[:, 0], points[:, 1]
        u = 16 * x * (1 - x) * y * (1 - y) * u
    return u


@pytest.mark.parametrize("name", ["burgers", "cdr", "darcy"])
def test_compiled_evaluation_gives_the_error_of_the_network(name, caplog):
    """The compiled evaluation's u_rel_l2 equals one computed in NumPy from the grid's
    coordinates (float64, 1e-10), for parameters with and without requires_grad and for
    a second task's evaluator with parameters sliced from a stack (as ``adapt_batch``
    hands them out): one graph for all (no recompile), its first call timed."""
    rc = run_config(compose([f"pde={name}", "model.hidden=[16,16]", "dtype=float64"]))
    tasks = [make_task(rc.pde, i, TaskSettings(n_obs=100)) for i in (1, 2)]
    forward = CompiledSolution()
    evs = [Evaluator(rc.pde, t, rc.dtype, forward=forward) for t in tasks]
    params = [scratch_params(rc, 3), scratch_params(rc, 4)]
    g, (d0, d1) = rc.pde.grid(), rc.pde.grid_dims
    c0, c1 = np.meshgrid(g[d0], g[d1], indexing="ij")
    cols = {d0: c0.ravel(), d1: c1.ravel()}
    pts = np.stack([cols[k] for k in rc.pde.inputs], axis=1)
    expected = []
    for p, t in zip(params, tasks, strict=True):
        u = _numpy_u(p, pts, rc.pde.bounds, darcy=name == "darcy")
        expected.append(np.linalg.norm(u - t.u_ref.ravel()) / np.linalg.norm(t.u_ref))
    with caplog.at_level("WARNING", logger="metapinn"):
        first = evs[0](params[0])["u_rel_l2"]
        assert forward.compiled and forward.compile_time > 0
        live = {k: v.clone().requires_grad_(True) for k, v in params[0].items()}
        stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
        with torch._dynamo.config.patch(error_on_recompile=True):
            second = evs[0](live)["u_rel_l2"]
            other = evs[1]({k: v[1] for k, v in stacked.items()})["u_rel_l2"]
    assert "torch.compile failed" not in caplog.text
    assert first == pytest.approx(expected[0], rel=1e-10)
    assert second == pytest.approx(expected[0], rel=1e-10)
    assert other == pytest.approx(expected[1], rel=1e-10)
    assert expected[0] != pytest.approx(expected[1], rel=1e-3)


def _broken_compile(*args, **kwargs):
    def fails(*a, **k):
        raise RuntimeError("no C++ compiler\nmore detail")
    return fails


def test_an_evaluation_that_cannot_compile_warns_once_and_runs_eagerly(monkeypatch, caplog):
    """Where torch.compile fails, the evaluators sharing a compiled forward pass warn once
    in all and evaluate eagerly: the errors of evaluators built without compiling."""
    monkeypatch.setattr("metapinn.adapt.torch.compile", _broken_compile)
    rc = run_config(compose(["pde=burgers", "model.hidden=[8]", "dtype=float64"]))
    tasks = [make_task(rc.pde, i, TaskSettings(n_obs=50)) for i in (0, 1)]
    params = scratch_params(rc, 0)
    forward = CompiledSolution()
    with caplog.at_level("WARNING", logger="metapinn"):
        got = [Evaluator(rc.pde, t, rc.dtype, forward=forward)(params)["u_rel_l2"]
               for t in tasks for _ in range(2)]
    assert caplog.text.count("torch.compile failed (RuntimeError: no C++ compiler)") == 1
    assert "evaluating eagerly" in caplog.text
    assert not forward.compiled and forward.compile_time == 0
    eager = [Evaluator(rc.pde, t, rc.dtype)(params)["u_rel_l2"] for t in tasks]
    assert got == [eager[0], eager[0], eager[1], eager[1]]


def test_a_step_that_cannot_compile_keeps_the_evaluation_eager(monkeypatch, caplog):
    """A solve whose training step failed to compile does not try the evaluation's
    compile too (one warning, not two), and logs the eager errors."""
    rc = run_config(compose(["pde=burgers", "model.hidden=[8]", "dtype=float64"]))
    task = make_task(rc.pde, 0, TaskSettings(n_obs=50))
    params = scratch_params(rc, 0)
    data = task_tensors(rc.pde, task, 64, 16, 0, rc.dtype, "cpu")

    def leaky(p):  # data-dependent Python control flow: no full graph
        if float(p["coef"].detach().sum()) > 1e9:
            return {"total": p["coef"].sum()}
        return loss_parts(p, data, rc.pde, rc.weights)

    forward = CompiledSolution()
    s = AdaptSettings(steps=4, lr=1e-3, log_every=2, compile=True)
    with caplog.at_level("WARNING", logger="metapinn"):
        r = adapt(params, leaky, s, evaluate=Evaluator(rc.pde, task, rc.dtype,
                                                       forward=forward))
    assert caplog.text.count("torch.compile failed") == 1 and r.compile_failed
    assert not forward.compiled
    eager = adapt(params, leaky, replace(s, compile=False),
                  evaluate=Evaluator(rc.pde, task, rc.dtype))
    assert [x["u_rel_l2"] for x in r.records] == [x["u_rel_l2"] for x in eager.records]


@pytest.mark.parametrize("overrides, n_logged, compiled", [
    ([], 81, True),  # quick's 1,000 steps
    (["adapt.compile=false"], 81, False),
    (["adapt.dense_log=false"], 21, False),
    (["adapt.steps=40", "adapt.log_every=10"], 30, False),
    (["adapt.steps=100", "adapt.log_every=2"], 65, True),
])
def test_solves_compile_their_evaluation_where_it_pays(overrides, n_logged, compiled):
    """The evaluation compiles with adapt.compile and at least EVAL_COMPILE_FROM (50)
    logged steps per solve (short runs' few evaluations stay eager)."""
    assert EVAL_COMPILE_FROM == 50
    rc = run_config(compose(["experiment=quick", "pde=burgers", *overrides]))
    assert len(rc.adapt.log_steps()) == n_logged
    assert isinstance(compiled_evaluation(rc), CompiledSolution) == compiled


def test_eval_stride_must_be_positive():
    with pytest.raises(ConfigError, match="eval_stride"):
        run_config(compose(["adapt.eval_stride=0"]))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("path", ["eager", "differentiable", "batched"])
def test_per_element_rates_scale_each_elements_step(optimizer, path):
    """lr_scale multiplies each element's step. Independent check: SGD and Adam act on
    each element separately (Adam's moments are element-wise), so elements scaled by c
    follow the run at learning rate c·lr and elements scaled by 0 never move, whatever
    the other elements do; on a separable quadratic each element's run is its own."""
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)

    def loss_fn(p, data=None):
        return {"total": 0.5 * (a * (p["w"] - 1.0) ** 2).sum() + (p["coef"] ** 2).sum()}

    p0 = {"w": torch.zeros(4, dtype=torch.float64), "coef": torch.ones(2, dtype=torch.float64)}
    scale = {"w": torch.tensor([0.0, 1.0, 2.0, 0.5], dtype=torch.float64),
             "coef": torch.tensor([3.0, 0.0], dtype=torch.float64)}
    s = AdaptSettings(steps=7, lr=0.05, lr_decay=1.0, optimizer=optimizer, compile=False,
                      coef_lr_factor=2.0)

    def run(settings, lr_scale):
        if path == "batched":
            from metapinn.adapt import adapt_batch
            return adapt_batch([p0], loss_fn, [{}], settings, lr_scale=lr_scale)[0].params
        return adapt(p0, loss_fn, settings, differentiable=path == "differentiable",
                     record_log=False, lr_scale=lr_scale).params

    out = run(s, scale)
    for k in p0:
        for i, c in enumerate(scale[k].tolist()):
            ref = run(AdaptSettings(**{**s.__dict__, "lr": 0.05 * c}), None) if c else p0
            assert out[k][i].item() == pytest.approx(ref[k][i].item(), rel=1e-12, abs=1e-14)
    assert out["w"][0] == 0 and out["coef"][1] == 1  # scale 0: not moved
    assert out["w"][2] != out["w"][1]  # scale 2 ≠ scale 1: the multipliers act


def test_per_element_rates_are_checked():
    p0 = {"w": torch.zeros(3)}
    with pytest.raises(ValueError, match="lr_scale"):
        adapt(p0, lambda p: {"total": (p["w"] ** 2).sum()}, AdaptSettings(steps=1),
              lr_scale={"w": torch.ones(2)})
    with pytest.raises(ValueError, match="lr_scale"):
        adapt(p0, lambda p: {"total": (p["w"] ** 2).sum()}, AdaptSettings(steps=1),
              lr_scale={"w": torch.ones(3), "v": torch.ones(1)})
