"""Meta-SGD: the meta-gradient over the initialisation and the learned per-element step
multipliers, checked by central differences through Adam inner steps; the multipliers'
way from meta-training through init.pt into the evaluation's inner loop."""

from dataclasses import replace

import pytest
import torch

from metapinn.adapt import AdaptSettings, adapt
from metapinn.config import compose, run_config
from metapinn.evaluate import initialiser, solve_task
from metapinn.meta import TUNED_RATE_METHODS, get_method, method_settings
from metapinn.meta.base import Context, meta_task
from metapinn.meta.metasgd import PREFIX, metasgd_task_grad, split
from metapinn.tasks import TaskSettings, make_task

SMALL = ["model.hidden=[8,8]", "pde.n_collocation=64", "pde.n_boundary=16", "pde.n_obs=20",
         "dtype=float64", "adapt.coef_lr_factor=3"]


@pytest.fixture(scope="module")
def setup():
    rc = run_config(compose(SMALL))
    tasks = [meta_task(rc, make_task(rc.pde, i, TaskSettings(n_obs=20)), 0) for i in range(3)]
    return rc, tasks


def _ctx(rc, tasks=(), **kw):
    kw = {"inner_steps": 2, "inner_lr": 0.01, "inner_optimizer": "adam", **kw}
    return Context(rc, method_settings("metasgd", **kw), 0, list(tasks))


def _meta(rc, ctx, seed=0):
    """A meta-dict with non-trivial log-multipliers (not all 0), so that the check covers
    the multipliers where they differ between elements."""
    meta = get_method("metasgd").init_meta(ctx)
    gen = torch.Generator().manual_seed(seed)
    for k in meta:
        if k.startswith(PREFIX):
            meta[k] = 0.3 * torch.randn(meta[k].shape, generator=gen, dtype=torch.float64)
    return meta


@pytest.mark.parametrize("k, optimizer", [(1, "adam"), (3, "adam"), (2, "sgd")])
def test_meta_gradient_matches_central_differences(setup, k, optimizer):
    """d/d(φ, s) of the query loss after k inner steps with step multipliers exp(s), along
    random directions, against central differences of an independent inner loop (the
    steps written out here: Adam's or SGD's update with lr × factor × exp(s) per
    element). Tolerance 1e-6 relative: float64 central differences with ε = 1e-5 carry
    an O(ε²) truncation error of ~1e-10 relative and round-off ~1e-16/ε ~ 1e-11."""
    rc, tasks = setup
    ctx = _ctx(rc, inner_steps=k, inner_optimizer=optimizer)
    meta, mt = _meta(rc, ctx, k), tasks[0]
    lr, factor, (b1, b2), eps_adam = 0.01, rc.adapt.coef_lr_factor, (0.9, 0.999), 1e-8

    def f(m):  # the inner loop, written out independently of metapinn.adapt
        phi, s = split(m)
        p = dict(phi)
        mom = {n: torch.zeros_like(v) for n, v in p.items()}
        vel = {n: torch.zeros_like(v) for n, v in p.items()}
        for t in range(1, k + 1):
            g = torch.autograd.grad(ctx.loss(p, mt.support), list(p.values()), create_graph=True)
            new = {}
            for (n, v), gn in zip(p.items(), g, strict=True):
                rate = lr * (factor if n == "coef" else 1.0) * s[n].exp()
                if optimizer == "sgd":
                    new[n] = v - rate * gn
                    continue
                mom[n] = b1 * mom[n] + (1 - b1) * gn
                vel[n] = b2 * vel[n] + (1 - b2) * gn * gn
                mhat, vhat = mom[n] / (1 - b1 ** t), vel[n] / (1 - b2 ** t)
                new[n] = v - rate * mhat / (vhat.sqrt() + eps_adam)
            p = new
        return ctx.loss(p, mt.query)

    leaf = {n: v.clone().requires_grad_(True) for n, v in meta.items()}
    g, loss = metasgd_task_grad(ctx, meta, mt.support, mt.query)
    assert float(loss) == pytest.approx(float(f(leaf).detach()), rel=1e-12)
    gen = torch.Generator().manual_seed(10 + k)
    for _ in range(3):
        v = {n: torch.randn(x.shape, generator=gen, dtype=torch.float64) for n, x in meta.items()}
        eps = 1e-5
        with torch.enable_grad():
            hi = f({n: (meta[n] + eps * v[n]).requires_grad_(True) for n in meta})
            lo = f({n: (meta[n] - eps * v[n]).requires_grad_(True) for n in meta})
        fd = float((hi - lo).detach()) / (2 * eps)
        dot = float(sum((g[n] * v[n]).sum() for n in meta))
        assert abs(dot - fd) <= 1e-6 * abs(fd)


def test_every_learned_rate_gets_a_gradient(setup):
    """Each multiplier tensor (network and coefficient) gets a finite, non-zero gradient."""
    rc, tasks = setup
    ctx = _ctx(rc, tasks)
    method = get_method("metasgd")
    meta = method.init_meta(ctx)
    assert all(float(meta[k].abs().max()) == 0 for k in meta if k.startswith(PREFIX))
    g, _ = method.meta_grad(meta, tasks, ctx)
    assert set(g) == set(meta)
    for n in meta:
        assert torch.isfinite(g[n]).all() and g[n].abs().max() > 0, n


def test_vmap_meta_gradient_equals_the_per_task_loop(setup):
    rc, tasks = setup
    method = get_method("metasgd")
    meta = _meta(rc, _ctx(rc, tasks))
    g_loop, l_loop = method.meta_grad(meta, tasks, _ctx(rc, tasks, vmap=False))
    g_vmap, l_vmap = method.meta_grad(meta, tasks, _ctx(rc, tasks, vmap=True))
    assert torch.allclose(l_loop, l_vmap, rtol=1e-12)
    for n in meta:
        assert torch.allclose(g_loop[n], g_vmap[n], rtol=1e-9, atol=1e-13), n


def test_settings():
    with pytest.raises(ValueError, match="first_order"):
        method_settings("metasgd", first_order=True)
    with pytest.raises(ValueError, match="inner_steps"):
        method_settings("metasgd", inner_steps=0)
    assert "metasgd" in TUNED_RATE_METHODS
    assert method_settings("metasgd", inner_lr=0.1).at_tuned_rate(0.02).inner_lr == 0.02
    # budget: MAML's count, (k + 1) gradients at the second-order cost
    assert method_settings("metasgd", inner_steps=3).gradient_evals_per_task(2.5) == 10.0


def test_the_learned_rates_reach_the_evaluation(setup, tmp_path):
    """init.pt → load_init → solve_task: with multipliers ~0 on the network (log-rate
    −60: exp ≈ 9e-27) and 1 on the coefficient, an evaluation solve leaves the network
    where it started (to ~1e-26 relative) and moves the coefficient only."""
    rc, _ = setup
    ctx = _ctx(rc)
    meta = get_method("metasgd").init_meta(ctx)
    for k in meta:
        if k.startswith(PREFIX) and k != PREFIX + "coef":
            meta[k] = torch.full_like(meta[k], -60.0)
    path = tmp_path / "init.pt"
    torch.save({"pde": rc.pde.name, "method": "metasgd", "hidden": list(rc.hidden),
                "meta": meta}, path)
    init_fn = initialiser(rc, path, "metasgd")
    assert set(init_fn.lr_scale) == set(split(meta)[0])
    assert float(init_fn.lr_scale["coef"].min()) == 1.0
    rc5 = replace(rc, adapt=replace(rc.adapt, steps=5, compile=False))
    task = make_task(rc.pde, 0, TaskSettings(n_obs=20))
    out = solve_task(rc5, task, init_fn).params
    phi = split(meta)[0]
    for n in phi:
        if n == "coef":
            assert not torch.allclose(out[n], phi[n])
        else:
            assert torch.allclose(out[n], phi[n], rtol=0, atol=1e-20), n
    # the same solve without the multipliers moves the network
    plain = adapt(phi, lambda p: {"total": ctx.loss(p, meta_task(rc, task, 0).full)},
                  AdaptSettings(steps=5, compile=False), record_log=False).params
    assert not torch.allclose(plain["w0"], phi["w0"])
