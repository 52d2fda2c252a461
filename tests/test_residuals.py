"""Each family's residual vanishes on an independent exact solution of its equation.

Derivatives of the closed forms come from torch.autograd in float64, so the check is
independent of the network's derivative engine.
"""

import math

import numpy as np
import pytest
import torch

from metapinn.pdes import get_pde
from metapinn.pdes.darcy import log_permeability


def _derivs(fn, pts):
    X = pts.clone().requires_grad_(True)
    u = fn(X[:, 0], X[:, 1])
    g = torch.autograd.grad(u.sum(), X, create_graph=True)[0]
    g0 = torch.autograd.grad(g[:, 0].sum(), X, create_graph=True)[0]
    g1 = torch.autograd.grad(g[:, 1].sum(), X, create_graph=True)[0]
    return u, g, g0, g1


def _points(pde, n=64):
    rng = np.random.default_rng(0)
    return torch.as_tensor(pde.sample_interior(rng, n), dtype=torch.float64)


@pytest.mark.parametrize("nu", [0.01, 0.05])
def test_burgers_residual_vanishes_on_cole_hopf_solution(nu):
    # φ = 1 + A e^{−νk²t} cos(kx) solves the heat equation; u = −2ν φ_x/φ solves Burgers
    pde, k, A = get_pde("burgers"), 2.0, 0.5

    def u_fn(x, t):
        phi = 1 + A * torch.exp(-nu * k * k * t) * torch.cos(k * x)
        phi_x = -A * k * torch.exp(-nu * k * k * t) * torch.sin(k * x)
        return -2 * nu * phi_x / phi

    X = _points(pde)
    u, g, gx, _ = _derivs(u_fn, X)
    d = {"u": u, "u_x": g[:, 0], "u_t": g[:, 1], "u_xx": gx[:, 0]}
    r = pde.residual(d, torch.tensor([nu], dtype=torch.float64), X)
    assert r.abs().max() < 1e-12
    # a wrong coefficient leaves a residual
    r_bad = pde.residual(d, torch.tensor([1.1 * nu], dtype=torch.float64), X)
    assert r_bad.abs().max() > 1e-6


@pytest.mark.parametrize("beta,nu,rho", [(1.0, 0.5, 2.0), (3.0, 0.1, 0.7)])
def test_cdr_residual_vanishes_on_fisher_kpp_travelling_wave(beta, nu, rho):
    # Ablowitz–Zeppetella wave of u_t = ν u_xx + ρu(1−u), carried along by convection β
    pde = get_pde("cdr")
    kappa, c = math.sqrt(rho / (6 * nu)), 5 * math.sqrt(rho * nu / 6)

    def u_fn(x, t):
        return (1 + 0.3 * torch.exp(kappa * (x - 3.0 - (c + beta) * t))) ** -2

    X = _points(pde)
    u, g, gx, _ = _derivs(u_fn, X)
    d = {"u": u, "u_x": g[:, 0], "u_t": g[:, 1], "u_xx": gx[:, 0]}
    theta = torch.tensor([beta, nu, rho], dtype=torch.float64)
    assert pde.residual(d, theta, X).abs().max() < 1e-12
    assert pde.residual(d, theta * torch.tensor([1, 1, 1.1]), X).abs().max() > 1e-4


def test_darcy_residual_matches_divergence_of_flux():
    """R + f = −∇·(a∇u) with the flux a∇u differentiated by autograd (no ∇log a formula)."""
    pde = get_pde("darcy")
    theta = torch.tensor([0.7, -0.4, 0.9, -1.0], dtype=torch.float64)

    def u_fn(x, y):
        return torch.sin(math.pi * x) * torch.sin(math.pi * y) * (1 + x * y)

    X = _points(pde).requires_grad_(True)
    u, g, gx, gy = _derivs(u_fn, X)
    d = {"u": u, "u_x": g[:, 0], "u_y": g[:, 1], "u_xx": gx[:, 0], "u_yy": gy[:, 1]}
    a = torch.exp(log_permeability(theta, X[:, 0], X[:, 1])[0])
    fx, fy = a * g[:, 0], a * g[:, 1]
    div = (torch.autograd.grad(fx.sum(), X, create_graph=True)[0][:, 0]
           + torch.autograd.grad(fy.sum(), X, create_graph=True)[0][:, 1])
    r = pde.residual(d, theta, X)
    assert torch.allclose(r + 1.0, -div, rtol=0, atol=1e-11)


def test_darcy_basis_gradients_match_autograd():
    from metapinn.pdes.darcy import basis

    X = _points(get_pde("darcy")).requires_grad_(True)
    phi, phi_x, phi_y = basis(X[:, 0], X[:, 1])
    for k in range(4):
        g = torch.autograd.grad(phi[k].sum(), X, retain_graph=True)[0]
        assert torch.allclose(g[:, 0], phi_x[k]) and torch.allclose(g[:, 1], phi_y[k])


@pytest.mark.parametrize("name", ["burgers", "cdr", "darcy"])
def test_coefficient_parametrisation_round_trip_and_prior(name):
    pde = get_pde(name)
    rng = np.random.default_rng(1)
    for ood in (False, True):
        for _ in range(20):
            theta = pde.sample_coefficients(rng, ood=ood)
            for c, v in zip(pde.coefficients, theta, strict=True):
                lo, hi = (c.ood_low, c.ood_high) if ood else (c.low, c.high)
                assert lo <= v <= hi
            back = pde.from_param(pde.to_param(theta))
            assert np.allclose(back, theta, rtol=1e-13)
            tt = torch.as_tensor(theta)
            assert torch.allclose(pde.from_param(pde.to_param(tt)), tt, rtol=1e-13)
    centre = pde.prior_centre()
    for c, v in zip(pde.coefficients, centre, strict=True):
        expected = math.sqrt(c.low * c.high) if c.log else 0.5 * (c.low + c.high)
        assert v == pytest.approx(expected)
