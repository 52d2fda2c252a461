"""The conditional PINN baseline: exact folding, the θ-fit, the meta-gradient, the outer loop."""

import numpy as np
import pytest
import torch

import metapinn.meta.conditional as cond
from metapinn.config import compose, run_config, settings
from metapinn.errors import ConfigError
from metapinn.loss import loss_parts, solution
from metapinn.meta import get_method, method_settings
from metapinn.meta.base import Context, load_init, meta_task
from metapinn.meta.conditional import (
    coef_scaling,
    draw_key,
    fit_coefficients,
    prior_draws,
)
from metapinn.meta.settings import ConditionalSettings
from metapinn.metatrain import meta_train
from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.nets import Params, n_layers, scratch_params
from metapinn.pdes.base import PDEFamily
from metapinn.tasks import (
    TaskSettings,
    generate_tasks,
    make_task,
    task_tensors,
    tasks_to_dataset,
)

SMALL = ["model.hidden=[8,8]", "pde.n_collocation=64", "pde.n_boundary=16", "pde.n_obs=20",
         "dtype=float64"]
PDES = ["burgers", "cdr", "darcy"]


@pytest.fixture(scope="module", params=PDES)
def setup(request):
    rc = run_config(compose([f"pde={request.param}", *SMALL]))
    tasks = [meta_task(rc, make_task(rc.pde, i, TaskSettings(n_obs=20)), 0) for i in range(3)]
    return rc, tasks


def conditional_u(meta: Params, points: torch.Tensor, p: torch.Tensor,
                  pde: PDEFamily) -> torch.Tensor:
    """u(points; p) of the conditional network, computed as defined, independently of
    metapinn.nets and of :func:`fold`: the normalised inputs [x; q] through the MLP (times
    the family's ansatz factor, if any). The library trains and fits the folded form."""
    lo = torch.tensor([b[0] for b in pde.bounds], dtype=points.dtype, device=points.device)
    hi = torch.tensor([b[1] for b in pde.bounds], dtype=points.dtype, device=points.device)
    mid, half = coef_scaling(pde, points.dtype, points.device)
    q = ((p - mid) / half).expand(points.shape[0], -1)
    h = torch.cat([2.0 * (points - lo) / (hi - lo) - 1.0, q], dim=1)
    L = n_layers(meta)
    for i in range(L):
        h = h @ meta[f"w{i}"].T + meta[f"b{i}"]
        if i < L - 1:
            h = torch.tanh(h)
    g = pde.ansatz(points)
    return h[:, 0] if g is None else g["u"] * h[:, 0]


def _ctx(rc, tasks=(), seed=0, **kw):
    return Context(rc, method_settings("conditional", **kw), seed, list(tasks))


def _random_meta(rc, seed=0, scale=1.0):
    """A conditional network with non-zero biases and weights that make u depend visibly on
    the coefficient inputs (Glorot init has zero biases: too special a point)."""
    meta = get_method("conditional").init_meta(_ctx(rc))
    gen = torch.Generator().manual_seed(100 + seed)
    out = {}
    for k, v in meta.items():
        noise = torch.randn(v.shape, generator=gen, dtype=torch.float64)
        out[k] = scale * v + 0.3 * noise if k.startswith("b") else scale * v
    return out


def _reference_parts(meta, p, data, rc):
    """The conditional network's loss parts computed independently of folding and of the
    Taylor-mode engine: u from :func:`conditional_u`, input derivatives by nested autograd."""
    pde, w = rc.pde, rc.weights
    x = data["colloc"].detach().clone().requires_grad_(True)
    u = conditional_u(meta, x, p, pde)
    d = {"u": u}
    firsts = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    for name in pde.derivatives:
        idx = [pde.inputs.index(c) for c in name[2:]]
        g = firsts[:, idx[0]]
        if len(idx) == 2:
            g = torch.autograd.grad(g.sum(), x, create_graph=True)[0][:, idx[1]]
        d[name] = g
    r = pde.residual(d, pde.from_param(p), x)
    ub = conditional_u(meta, data["bc_points"], p, pde) - data["bc_values"]
    up = (conditional_u(meta, data["pair_a"], p, pde)
          - conditional_u(meta, data["pair_b"], p, pde))
    b_err = torch.cat([ub, up])
    d_err = conditional_u(meta, data["obs_points"], p, pde) - data["obs_values"]
    parts = {"residual": (r * r).mean(), "boundary": (b_err * b_err).mean(),
             "data": (d_err * d_err).mean()}
    parts["total"] = (w.residual * parts["residual"] + w.boundary * parts["boundary"]
                      + w.data * parts["data"])
    return parts


# (a) folding is exact ---------------------------------------------------------------------

def test_folded_pinn_equals_the_conditional_network_at_the_fitted_coefficients(setup):
    rc, tasks = setup
    meta, data = _random_meta(rc), dict(tasks[0].full)
    # observations the network can fit away from the prior centre (so the fold moves b0)
    mid, half = coef_scaling(rc.pde, torch.float64, "cpu")
    u = conditional_u(meta, data["obs_points"], mid + 0.5 * half, rc.pde).detach()
    data["obs_values"] = u + 0.01 * torch.sin(7 * data["obs_points"][:, 0])
    ctx = _ctx(rc, theta_fit_steps=20)
    p = fit_coefficients(meta, data, ctx)
    params = get_method("conditional").initialisation(meta, data, ctx)
    expected = {k: tuple(v.shape) for k, v in scratch_params(rc, 0).items()}
    assert {k: tuple(v.shape) for k, v in params.items()} == expected
    assert torch.equal(params["coef"], p)
    pts = torch.cat([data["colloc"], data["bc_points"], data["obs_points"]])
    u_plain = solution(params, pts, rc.pde)
    u_cond = conditional_u(meta, pts, p, rc.pde)
    assert float((u_plain - u_cond).abs().max()) <= 1e-12 * float(u_cond.abs().max())
    plain = loss_parts(params, data, rc.pde, rc.weights)
    ref = _reference_parts(meta, p, data, rc)
    for k in ref:
        diff, scale = float((plain[k] - ref[k]).detach()), float(ref[k].detach())
        assert abs(diff) <= 1e-12 * abs(scale), k  # Darcy's boundary part: 0 == 0
    # the coefficient inputs matter: the folded bias is not the network's own b0
    assert not torch.allclose(params["b0"], meta["b0"])


# (b) the θ-fit recovers a manufactured coefficient ----------------------------------------

def test_theta_fit_recovers_the_coefficient_of_observations_made_by_the_network(setup):
    """Observations u(x_obs; p_true) of a frozen random network, no noise: the misfit is 0
    at p_true, and L-BFGS from the prior centre (|q_true| ≥ 0.2 away) must reach it.

    Tolerance 1e-4 in the normalised coordinate q (a 1e-4 fraction of the prior's
    half-width; for Burgers a relative error of ν of about 1e-4, far below any coefficient
    threshold): the fit stops once the misfit changes by < 1e-14, and near p_true the
    misfit is ½ δᵀHδ, so the error is about sqrt(2e-14/λ_min(H)); for Darcy's random
    network λ_min is small (condition number of H ≈ 1e5), measured error 5e-6, the other
    families 1e-8 to 1e-7. Farther q_true (≈ 0.6) can lie beyond a spurious local minimum
    of a random network's misfit, which is a property of the network, not of the fit.
    """
    rc, tasks = setup
    pde = rc.pde
    meta = _random_meta(rc, seed=1, scale=1.5)
    mid, half = coef_scaling(pde, torch.float64, "cpu")
    n = len(pde.coefficients)
    q_true = torch.tensor([0.3, -0.2, 0.25, -0.3][:n], dtype=torch.float64)
    p_true = mid + half * q_true
    data = dict(tasks[0].full)
    data["obs_values"] = conditional_u(meta, data["obs_points"], p_true, pde).detach()
    p0 = torch.as_tensor(pde.to_param(pde.prior_centre()), dtype=torch.float64)
    assert float(((p0 - mid) / half).abs().max()) < 1e-12  # the fit starts at q = 0
    p_fit = fit_coefficients(meta, data, _ctx(rc, theta_fit_steps=100))
    err = ((p_fit - p_true) / half).abs().max()
    assert float(err) <= 1e-4, (p_fit, p_true)
    # no steps: the prior centre, unchanged
    assert torch.equal(fit_coefficients(meta, data, _ctx(rc, theta_fit_steps=0)), p0)


def test_theta_fit_keeps_the_prior_centre_when_nothing_fits_better(setup):
    rc, tasks = setup
    meta = _random_meta(rc)
    data = dict(tasks[0].full)
    p0 = torch.as_tensor(rc.pde.to_param(rc.pde.prior_centre()), dtype=torch.float64)
    data["obs_values"] = conditional_u(meta, data["obs_points"], p0, rc.pde).detach()
    p_fit = fit_coefficients(meta, data, _ctx(rc, theta_fit_steps=10))
    assert torch.equal(p_fit, p0)


# (c) the meta-gradient and its draws -------------------------------------------------------

def test_meta_grad_is_the_gradient_of_the_mean_physics_loss_over_prior_draws(setup):
    rc, tasks = setup
    ctx = _ctx(rc, tasks)
    method = get_method("conditional")
    meta, batch = _random_meta(rc), tasks[:2]
    g, loss = method.meta_grad(meta, batch, ctx)
    thetas = prior_draws(rc.pde, 0, draw_key(meta, batch), len(batch))
    lo = np.array([c.low for c in rc.pde.coefficients])
    hi = np.array([c.high for c in rc.pde.coefficients])
    assert thetas.shape == (2, len(lo)) and ((thetas >= lo) & (thetas <= hi)).all()
    # independent reference: a per-draw loop of the conditional network's physics loss
    # (nested-autograd derivatives, no folding) and torch.autograd on leaf copies
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in meta.items()}
    w = rc.weights
    total = 0
    for theta, mt in zip(thetas, batch, strict=True):
        p = torch.as_tensor(rc.pde.to_param(theta), dtype=torch.float64)
        parts = _reference_parts(leaves, p, mt.full, rc)
        total = total + w.residual * parts["residual"] + w.boundary * parts["boundary"]
    ref_loss = total / len(batch)
    ref_g = torch.autograd.grad(ref_loss, list(leaves.values()))
    assert abs(float(loss - ref_loss.detach())) <= 1e-12 * abs(float(ref_loss.detach()))
    assert set(g) == set(meta)
    for k, r in zip(leaves, ref_g, strict=True):
        assert torch.allclose(g[k], r, rtol=1e-10, atol=1e-12 * float(r.abs().max())), k
    # the gradient reaches the coefficient columns of the first layer
    d = len(rc.pde.inputs)
    assert float(g["w0"][:, d:].abs().max()) > 0


def test_draws_are_reproducible_and_differ_between_steps_and_seeds(setup):
    rc, tasks = setup
    method = get_method("conditional")
    meta, batch = _random_meta(rc), tasks[:2]
    key = draw_key(meta, batch)
    a = prior_draws(rc.pde, 0, key, 4)
    np.testing.assert_array_equal(a, prior_draws(rc.pde, 0, key, 4))
    assert draw_key({k: v.clone() for k, v in meta.items()}, batch) == key
    g1, l1 = method.meta_grad(meta, batch, _ctx(rc, tasks))
    g2, l2 = method.meta_grad(meta, batch, _ctx(rc, tasks))
    assert torch.equal(l1, l2) and all(torch.equal(g1[k], g2[k]) for k in g1)
    # the next step's meta-parameters give other draws; so do another seed and batch
    stepped = {k: v - 1e-3 * g1[k] for k, v in meta.items()}
    assert draw_key(stepped, batch) != key
    assert not np.array_equal(prior_draws(rc.pde, 0, draw_key(stepped, batch), 4), a)
    assert not np.array_equal(prior_draws(rc.pde, 1, key, 4), a)
    assert draw_key(meta, tasks[1:3]) != key
    _, l_seed = method.meta_grad(meta, batch, _ctx(rc, tasks, seed=1))
    assert not torch.equal(l_seed, l1)


# (d) the outer loop writes a usable init.pt -------------------------------------------------

TS = TaskSettings(n_train=4, n_val=1, n_test=1, n_ood=0, n_obs=20, seed=0)


@pytest.fixture(scope="module")
def burgers_file(tmp_path_factory):
    rc = run_config(compose(SMALL))
    tasks = generate_tasks(rc.pde, TS)
    path = write_netcdf(tasks_to_dataset(rc.pde, tasks, TS),
                        tmp_path_factory.mktemp("cond") / "tasks.nc", title="t")
    return rc, tasks, path


def test_meta_train_writes_an_init_that_loads_as_plain_pinns(burgers_file, tmp_path,
                                                            monkeypatch):
    rc, tasks, path = burgers_file
    keys = []
    original = cond.prior_draws

    def recording(pde, seed, key, n):
        keys.append(key)
        return original(pde, seed, key, n)

    monkeypatch.setattr(cond, "prior_draws", recording)
    ms = method_settings("conditional", outer_steps=4, meta_batch=2, val_every=2,
                         checkpoint_every=2, theta_fit_steps=5)
    init = meta_train(rc, ms, path, tmp_path / "full")
    full_keys = list(keys)
    assert len(full_keys) == 4 and len(set(full_keys)) == 4  # other draws at every step
    hist = read_netcdf(tmp_path / "full" / "history.nc")
    assert list(hist.gradient_evals.values) == [2.0, 4.0, 6.0, 8.0]
    assert np.isfinite(hist.val_loss.values[[1, 3]]).all()
    # resumption draws what the uninterrupted run drew, and ends at the same parameters
    keys.clear()
    meta_train(rc, ms, path, tmp_path / "part", stop_after=2)
    resumed = meta_train(rc, ms, path, tmp_path / "part", resume=True)
    assert keys == full_keys
    a = torch.load(init, weights_only=True)["meta"]
    b = torch.load(resumed, weights_only=True)["meta"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["w0"].shape == (8, len(rc.pde.inputs) + len(rc.pde.coefficients))

    fn = load_init(init, rc, "conditional")
    expected = {k: tuple(v.shape) for k, v in scratch_params(rc, 0).items()}
    for t in tasks[:2]:
        data = task_tensors(rc.pde, t, rc.n_collocation, rc.n_boundary, 0, rc.dtype)
        params = fn(data)
        assert {k: tuple(v.shape) for k, v in params.items()} == expected
        assert all(torch.isfinite(v).all() for v in params.values())
        assert fn.lr_scale is None
    # the hand-over uses the θ-fit steps meta-training was configured with (saved in
    # init.pt), not the defaults: with none, every task starts at the prior centre
    blob = torch.load(init, weights_only=True)
    blob["settings"]["theta_fit_steps"] = 0
    torch.save(blob, tmp_path / "no_fit.pt")
    centre = torch.as_tensor(rc.pde.to_param(rc.pde.prior_centre()), dtype=rc.dtype)
    data = task_tensors(rc.pde, tasks[0], rc.n_collocation, rc.n_boundary, 0, rc.dtype)
    assert torch.allclose(load_init(tmp_path / "no_fit.pt", rc, "conditional")(data)["coef"],
                          centre)
    assert not torch.allclose(fn(data)["coef"], centre)
    blob["settings"]["theta_fit_steps"] = -1
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="saved conditional settings"):
        load_init(tmp_path / "bad.pt", rc, "conditional")


# (e) settings ---------------------------------------------------------------------------------

def test_settings_validation_budget_and_config():
    ms = method_settings("conditional")
    assert isinstance(ms, ConditionalSettings) and ms.theta_fit_steps == 50
    assert ms.gradient_evals_per_task(3.0) == 1.0
    assert method_settings("conditional", meta_batch=3).gradient_evals_per_step(3.0) == 3.0
    # the budget buys steps at one gradient per draw, at least the evaluation's steps
    assert ms.for_budget(2400, 3.0, 100).outer_steps == 600
    assert ms.for_budget(2400, 3.0, 1000).outer_steps == 1000
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="method.theta_fit_steps must be an integer ≥ 0"):
            method_settings("conditional", theta_fit_steps=bad)
    assert method_settings("conditional", theta_fit_steps=0).theta_fit_steps == 0
    cfg = settings(compose(["method=conditional", "method.theta_fit_steps=7"])).method
    assert type(cfg) is ConditionalSettings and cfg.theta_fit_steps == 7
    assert cfg.outer_lr == 0.002 and cfg.meta_batch == 4 and cfg.inner_steps == 0
