"""Meta-gradients against finite differences and their defining formulas (float64)."""

from dataclasses import replace

import pytest
import torch
from torch.func import grad

from metapinn.adapt import AdaptSettings, adapt
from metapinn.config import compose, run_config
from metapinn.meta import METHODS, get_method, method_settings
from metapinn.meta.base import COMPILE_INNER_FROM, Context, compiles_inner, meta_task
from metapinn.meta.hypernet import hyper_initialisation
from metapinn.meta.imaml import proximal_solve, proximal_strength
from metapinn.meta.leap import leap_increments, leap_task_grad
from metapinn.meta.maml import maml_task_grad
from metapinn.meta.reptile import reptile_task_grad
from metapinn.metatrain import build_context
from metapinn.ncio import write_netcdf
from metapinn.nets import scratch_params
from metapinn.settings import MethodSettings
from metapinn.tasks import TaskSettings, generate_tasks, make_task, tasks_to_dataset
from metapinn.taylor import taylor_errors

SMALL = ["model.hidden=[8,8]", "pde.n_collocation=64", "pde.n_boundary=16", "pde.n_obs=20",
         "dtype=float64"]


@pytest.fixture(scope="module")
def setup():
    rc = run_config(compose(SMALL))
    tasks = [meta_task(rc, make_task(rc.pde, i, TaskSettings(n_obs=20)), 0) for i in range(3)]
    return rc, tasks


def _ctx(rc, tasks=(), name="maml", **kw):
    return Context(rc, method_settings(name, **kw), 0, list(tasks))


def _dot(a, b):
    return sum((a[k] * b[k]).sum() for k in a)


@pytest.mark.parametrize("k, optimizer", [(1, "sgd"), (2, "sgd"), (3, "sgd"),
                                          (2, "adam"), (6, "adam")])
def test_maml_gradient_matches_central_differences(setup, k, optimizer):
    """Through k − 1 inner steps of SGD, or of the functional Adam that evaluation uses
    (differentiated through its moment estimates and bias corrections)."""
    rc, tasks = setup
    ctx = _ctx(rc, inner_steps=k - 1, inner_lr=0.01, inner_optimizer=optimizer)
    phi, mt = scratch_params(rc, 0), tasks[0]

    def f(p):  # L_k(φ_k(φ_1))
        return ctx.loss(ctx.inner_adapt(p, mt.support), mt.query)

    g, _ = maml_task_grad(ctx, phi, mt.support, mt.query, first_order=False)
    gen = torch.Generator().manual_seed(k)
    for _ in range(3):
        v = {n: torch.randn(x.shape, generator=gen, dtype=torch.float64) for n, x in phi.items()}
        eps = 1e-5
        fd = (f({n: phi[n] + eps * v[n] for n in phi})
              - f({n: phi[n] - eps * v[n] for n in phi})) / (2 * eps)
        assert abs(float(_dot(g, v)) - float(fd)) <= 1e-6 * abs(float(fd))


def test_taylor_expansion_error_shrinks_like_alpha_squared(setup):
    rc, tasks = setup
    ctx = _ctx(rc)
    alphas = [2.5e-3, 1.25e-3, 6.25e-4]
    ds = taylor_errors(scratch_params(rc, 0), ctx.loss, tasks[0].support, tasks[0].query, 3,
                       alphas)
    e = ds.rel_error.values
    ratios = e[:, :-1] / e[:, 1:]
    assert ((ratios >= 3) & (ratios <= 5)).all(), ratios


def test_fomaml_is_the_plain_gradient_at_the_adapted_parameters(setup):
    rc, tasks = setup
    ctx = _ctx(rc, inner_steps=3, inner_lr=0.01)
    phi, mt = scratch_params(rc, 0), tasks[0]
    g, _ = maml_task_grad(ctx, phi, mt.support, mt.query, first_order=True)
    p = dict(phi)
    for _ in range(3):  # independent SGD loop
        gp = grad(ctx.loss)(p, mt.support)
        p = {n: p[n] - 0.01 * gp[n] for n in p}
    expected = grad(ctx.loss)(p, mt.query)
    for n in phi:
        assert torch.allclose(g[n], expected[n], rtol=1e-10, atol=1e-13)
    g2, _ = maml_task_grad(ctx, phi, mt.support, mt.query, first_order=False)
    assert not torch.allclose(g2["w0"], g["w0"], rtol=1e-6)  # the Jacobian matters


def test_reptile_direction_is_the_sum_of_sgd_gradients(setup):
    rc, tasks = setup
    alpha, k = 0.01, 4
    ctx = _ctx(rc, inner_steps=k, inner_lr=alpha, inner_optimizer="sgd")
    phi, mt = scratch_params(rc, 0), tasks[1]
    g, _ = reptile_task_grad(ctx, phi, mt.support, mt.query)
    p, total = dict(phi), {n: torch.zeros_like(v) for n, v in phi.items()}
    for _ in range(k):
        gp = grad(ctx.loss)(p, mt.support)
        total = {n: total[n] + gp[n] for n in p}
        p = {n: p[n] - alpha * gp[n] for n in p}
    for n in phi:
        assert torch.allclose(g[n], total[n], rtol=1e-9, atol=1e-12)
        assert torch.allclose(g[n], (phi[n] - p[n]) / alpha, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_leap_without_loss_term_and_norm_is_alpha_times_reptile(setup, optimizer):
    rc, tasks = setup
    kw = dict(inner_steps=5, inner_lr=0.01, inner_optimizer=optimizer, leap_norm=False,
              leap_loss_term=False)
    ctx = _ctx(rc, name="leap", **kw)
    phi, mt = scratch_params(rc, 0), tasks[0]
    g_leap, _ = leap_task_grad(ctx, phi, mt.support, mt.query)
    g_rep, _ = reptile_task_grad(ctx, phi, mt.support, mt.query)
    for n in phi:
        assert torch.allclose(g_leap[n], 0.01 * g_rep[n], rtol=1e-9, atol=1e-12)


def test_leap_increment_matches_the_formula(setup):
    rc, tasks = setup
    ctx = _ctx(rc)
    phi, mt = scratch_params(rc, 0), tasks[0]
    inner = AdaptSettings(steps=2, lr=0.01, lr_decay=1.0, coef_lr_factor=1.0)
    r = adapt(phi, lambda p: ctx.parts(p, mt.support), inner, record_log=False,
              keep_trajectory=True)
    assert len(r.trajectory) == 3
    (t0, f0, g0), (t1, f1, _) = r.trajectory[0], r.trajectory[1]
    # trajectory entries are the iterates, their losses and their gradients
    assert torch.allclose(f0, ctx.loss(phi, mt.support))
    g_ref = grad(ctx.loss)(phi, mt.support)
    assert all(torch.allclose(g0[n], g_ref[n]) for n in phi)
    for stabilise in (False, True):
        inc = leap_increments(r.trajectory, norm=True, loss_term=True, stabilise=stabilise)[0]
        df = f1 - f0
        if stabilise:
            df = -df.abs()
        length = torch.sqrt(sum(((t1[n] - t0[n]) ** 2).sum() for n in phi) + df ** 2)
        for n in phi:
            expected = ((t0[n] - t1[n]) - df * g0[n]) / length
            assert torch.allclose(inc[n], expected, rtol=1e-12, atol=1e-15)
    assert float(f1 - f0) < 0  # the first step descends, so the stabiliser changes nothing


@pytest.mark.parametrize("name,kw", [("maml", {}), ("fomaml", {}), ("reptile", {}),
                                     ("hypernet", {})])
def test_vmap_meta_gradient_equals_the_per_task_loop(setup, name, kw):
    rc, tasks = setup
    method = get_method(name)
    base = dict(inner_steps=2, inner_lr=0.01, **kw)
    meta = method.init_meta(_ctx(rc, tasks, name, **base))
    g_loop, l_loop = method.meta_grad(meta, tasks, _ctx(rc, tasks, name, vmap=False, **base))
    g_vmap, l_vmap = method.meta_grad(meta, tasks, _ctx(rc, tasks, name, vmap=True, **base))
    assert torch.allclose(l_loop, l_vmap, rtol=1e-12)
    for n in meta:
        assert torch.allclose(g_loop[n], g_vmap[n], rtol=1e-9, atol=1e-13), n


def _spy_compile(monkeypatch, fail: bool = False) -> list:
    """Count torch.compile calls; with ``fail`` the compiled function raises as a
    machine without a working compiler would."""
    calls, real = [], torch.compile

    def spy(fn, *a, **k):
        calls.append(fn)
        if not fail:
            return real(fn, *a, **k)

        def broken(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")
        return broken

    monkeypatch.setattr(torch, "compile", spy)
    return calls


@pytest.mark.parametrize("name", ["reptile", "leap", "pretrain", "hypernet"])
def test_compiled_graph_free_steps_give_the_eager_meta_gradients(setup, monkeypatch, caplog,
                                                                  name):
    """Reptile's and LEAP's inner runs, pretraining's joint gradient and the hypernetwork's
    (without inner steps) as compiled functions (``compile_inner``) give the eager
    meta-gradient (Reptile's and the hypernetwork's eager reference: vmapped over the
    batch) to float64 round-off: the same arithmetic, fused. 1e-9 relative leaves room for
    the few inner steps' round-off; an error in the update, the gradients LEAP keeps or
    pretraining's coefficient rows shows up at order one."""
    rc, tasks = setup
    kw = dict(inner_steps=0 if name == "hypernet" else 4, inner_lr=0.01,
              inner_optimizer="adam")
    batch = [tasks[2], tasks[0]]  # out of training order: the rows must follow the tasks
    eager = _ctx(rc, tasks, name, **kw)
    method = get_method(name)
    meta = {k: v.detach() for k, v in method.init_meta(eager).items()}
    if name == "pretrain":  # distinct coefficient rows, so that a wrong row would show
        meta["coef_tasks"] = meta["coef_tasks"] + torch.tensor([[0.0], [0.3], [-0.2]],
                                                               dtype=rc.dtype)
    compiled = _spy_compile(monkeypatch)
    g_e, l_e = method.meta_grad(meta, batch, eager)
    assert not compiled
    g_c, l_c = method.meta_grad(meta, batch, replace(eager, compile_inner=True))
    assert compiled and "torch.compile failed" not in caplog.text  # the compiled path ran
    assert torch.allclose(l_c, l_e, rtol=1e-9)
    for n in meta:
        assert torch.allclose(g_c[n], g_e[n], rtol=1e-9, atol=1e-12 * g_e[n].abs().max()), n
    if name == "pretrain":  # against the joint loss written out with each task's own row
        def joint(m):
            net = {k: v for k, v in m.items() if k != "coef_tasks"}
            return (eager.loss(dict(net, coef=m["coef_tasks"][2]), tasks[2].full)
                    + eager.loss(dict(net, coef=m["coef_tasks"][0]), tasks[0].full)) / 2
        g_ref = grad(joint)(meta)
        for n in meta:
            assert torch.allclose(g_c[n], g_ref[n], rtol=1e-9, atol=1e-15), n
        assert g_ref["coef_tasks"][1].abs().max() == 0  # the row of the task not drawn
    else:
        assert all(g_e[n].abs().max() > 0 for n in meta)


def test_compiled_proximal_solve_gives_the_eager_one(setup, monkeypatch, caplog):
    """iMAML's inner run (Adam on the loss plus λ/2‖φ − θ‖²) compiled gives the eager φ to
    float64 round-off. (Its meta-gradient is not compared: the unconverged CG solve of
    (I + H/λ) x = g moved by 1e-5 relative when φ moved by 1e-15, with or without the
    compile, so it cannot tell a compile error from round-off.)"""
    rc, tasks = setup
    ctx = _ctx(rc, tasks, "imaml", inner_steps=6, inner_lr=0.01, inner_optimizer="adam")
    theta = {k: v.detach() for k, v in get_method("imaml").init_meta(ctx).items()}
    lam = proximal_strength(ctx)
    compiled = _spy_compile(monkeypatch)

    def solve(c):
        return proximal_solve(lambda p: c.parts(p, tasks[0].support), theta, lam,
                              c.inner_settings, run=c.run_inner)

    eager, fused = solve(ctx), solve(replace(ctx, compile_inner=True))
    assert len(compiled) == 1 and "torch.compile failed" not in caplog.text
    for n in theta:
        assert torch.allclose(fused[n], eager[n], rtol=1e-10, atol=1e-14), n
        assert not torch.equal(eager[n], theta[n]), n  # the solve moved every tensor


@pytest.mark.parametrize("name", ["reptile", "pretrain"])
def test_a_failed_compile_warns_once_and_the_job_goes_on_eagerly(setup, monkeypatch, caplog,
                                                                 name):
    """Where compiling fails (here: no working C++ compiler), the first attempt warns, the
    meta-gradient is the eager one, and the job does not try again (one warning and one
    compile attempt over two outer steps; ``compile_inner`` is off afterwards)."""
    rc, tasks = setup
    kw = dict(inner_steps=3, inner_lr=0.01, inner_optimizer="adam")
    method = get_method(name)
    eager = _ctx(rc, tasks, name, **kw)
    meta = {k: v.detach() for k, v in method.init_meta(eager).items()}
    g_e, _ = method.meta_grad(meta, tasks[:2], eager)
    calls = _spy_compile(monkeypatch, fail=True)
    ctx = replace(eager, compile_inner=True)
    for _ in range(2):
        g, _ = method.meta_grad(meta, tasks[:2], ctx)
        for n in meta:
            assert torch.allclose(g[n], g_e[n], rtol=1e-12, atol=1e-15), n
    assert caplog.text.count("torch.compile failed") == 1
    assert len(calls) == 1 and not ctx.compile_inner


def test_compiled_inner_steps_where_they_pay(tmp_path):
    """A job compiles its graph-free steps from COMPILE_INNER_FROM of its gradient
    evaluations (outer steps × meta-batch × the method's graph-free evaluations), never
    with adapt.compile=false, nor for methods whose inner loop is differentiable; Reptile
    then runs its tasks one after another on a CPU instead of vmapping the eager loop, and
    meta-training's context carries the decision."""
    rc = run_config(compose(SMALL))
    off = run_config(compose(SMALL + ["adapt.compile=false"]))
    per_step = 4 * 5  # meta_batch × inner_steps
    enough = method_settings("reptile", outer_steps=-(-COMPILE_INNER_FROM // per_step))
    short = method_settings("reptile", outer_steps=COMPILE_INNER_FROM // per_step - 1)
    assert compiles_inner(rc, enough) and not compiles_inner(rc, short)
    assert not compiles_inner(off, enough)
    # pretraining spends one evaluation per task and outer step, so does the hypernetwork
    # without inner steps; MAML's inner loop is differentiable, so never
    for name, kw in [("pretrain", {}), ("hypernet", {"inner_steps": 0})]:
        assert compiles_inner(rc, method_settings(name, outer_steps=COMPILE_INNER_FROM // 4,
                                                  **kw))
        assert not compiles_inner(rc, method_settings(
            name, outer_steps=COMPILE_INNER_FROM // 4 - 1, **kw))
    for name, kw in [("maml", {}), ("fomaml", {}), ("hypernet", {"inner_steps": 2})]:
        assert not compiles_inner(rc, method_settings(name, outer_steps=10**7, **kw))
    assert not Context(rc, enough, 0, compile_inner=True).vmap_graph_free
    assert Context(rc, enough, 0, compile_inner=False).vmap_graph_free
    assert Context(rc, enough, 0, compile_inner=True).inner_settings.compile
    assert not Context(rc, enough, 0).inner_settings.compile
    # meta-training's context takes the decision from its settings
    ts = TaskSettings(n_train=4, n_val=1, n_test=0, n_ood=0, n_obs=20, seed=0)
    path = write_netcdf(tasks_to_dataset(rc.pde, generate_tasks(rc.pde, ts), ts),
                        tmp_path / "tasks.nc", title="t")
    assert build_context(rc, enough, path).compile_inner
    assert not build_context(rc, short, path).compile_inner
    assert not build_context(off, enough, path).compile_inner


def test_every_hypernetwork_parameter_gets_a_gradient(setup):
    rc, tasks = setup
    ctx = _ctx(rc, tasks, "hypernet", inner_steps=1, inner_lr=0.01)
    method = get_method("hypernet")
    meta = method.init_meta(ctx)
    g, _ = method.meta_grad(meta, tasks, ctx)
    assert set(g) == set(meta)
    for n, v in g.items():
        assert torch.isfinite(v).all() and v.abs().max() > 0, n
    # the initialisation depends on the observations, not on their order
    data = tasks[0].support
    perm = torch.randperm(data["obs_values"].shape[0], generator=torch.Generator().manual_seed(0))
    shuffled = dict(data, obs_points=data["obs_points"][perm], obs_values=data["obs_values"][perm])
    a, b = hyper_initialisation(meta, data, ctx), hyper_initialisation(meta, shuffled, ctx)
    c = hyper_initialisation(meta, tasks[1].support, ctx)
    assert all(torch.allclose(a[n], b[n], rtol=1e-12) for n in a)
    assert not torch.allclose(a["w0"], c["w0"])


def test_registry_names_and_errors():
    for name in METHODS:  # every entry loads, and its class carries its registry name
        assert get_method(name).name == name
        assert issubclass(get_method(name).settings, MethodSettings)
    with pytest.raises(ValueError, match="valid choices"):
        get_method("anil")
    with pytest.raises(ValueError, match="method.meta_batch"):
        MethodSettings(name="maml", meta_batch=0)
    with pytest.raises(ValueError, match="inner_optimizer"):
        MethodSettings(name="maml", inner_optimizer="rmsprop")
    with pytest.raises(ValueError, match="hyper_width"):
        method_settings("hypernet", hyper_width=0)
    inner = MethodSettings(name="maml", inner_lr=0.03).inner
    assert (inner.lr, inner.lr_decay, inner.coef_lr_factor) == (0.03, 1.0, 1.0)
