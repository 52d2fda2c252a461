"""The Darcy reference solver (cell-centred finite volumes) against independent truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import RectBivariateSpline

from metapinn.pdes.darcy import DEFAULT_N, Darcy, _solve, log_permeability, reference_solution


def _u_star(x, y):
    """Manufactured solution, zero on ∂[0, 1]², not symmetric (torch)."""
    return torch.sin(torch.pi * x) * torch.sin(torch.pi * y) * torch.exp(x - 0.5 * y)


def _manufactured_rhs(theta):
    """f = −∇·(a∇u*) by automatic differentiation of the exact expressions (float64)."""
    theta_t = torch.as_tensor(theta, dtype=torch.float64)

    def f(xx, yy):
        x = torch.tensor(xx, dtype=torch.float64, requires_grad=True)
        y = torch.tensor(yy, dtype=torch.float64, requires_grad=True)
        u = _u_star(x, y)
        u_x, u_y = torch.autograd.grad(u.sum(), (x, y), create_graph=True)
        a = torch.exp(log_permeability(theta_t, x, y)[0])
        flux_x, flux_y = a * u_x, a * u_y
        div = (torch.autograd.grad(flux_x.sum(), x, retain_graph=True)[0]
               + torch.autograd.grad(flux_y.sum(), y)[0])
        return (-div).detach().numpy()

    return f


def _rel_l2(u, ref):
    return float(np.linalg.norm(u - ref) / np.linalg.norm(ref))


def _nested_error_estimate(theta, n):
    """Richardson estimate of the relative L2 error of the n-grid: the centres of the n
    and 3n grids coincide, and for a second-order scheme u_n − u_3n ≈ (8/9)(u_n − u)."""
    _, u = _solve(theta, n)
    _, u3 = _solve(theta, 3 * n)
    fine = u3[1::3, 1::3]
    return 9.0 / 8.0 * _rel_l2(u, fine)


def _spline_error_estimate(theta, n):
    """Estimate of the relative L2 error of the n-grid from a 2n solve, compared at the
    n-grid centres through a bicubic spline of the fine solution (plus its boundary zeros):
    the interpolation is O(h⁴), the scheme O(h²), so u_n − I u_2n ≈ (3/4)(u_n − u)."""
    c, u = _solve(theta, n)
    cf, uf = _solve(theta, 2 * n)
    nodes = np.concatenate([[0.0], cf, [1.0]])
    fine = RectBivariateSpline(nodes, nodes, np.pad(uf, 1), kx=3, ky=3)(c, c)
    return 4.0 / 3.0 * _rel_l2(u, fine)


@pytest.mark.parametrize("theta", [(0.7, -0.4, 1.0, -0.8), (1.0, 1.0, 1.0, 1.0)])
def test_manufactured_solution_second_order(theta):
    theta = np.array(theta)
    rhs = _manufactured_rhs(theta)
    errs = []
    for n in (16, 32, 64):
        c, u = _solve(theta, n, rhs=rhs)
        yy, xx = np.meshgrid(c, c, indexing="ij")
        exact = _u_star(torch.as_tensor(xx), torch.as_tensor(yy)).numpy()
        errs.append(_rel_l2(u, exact))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all((orders >= 1.8) & (orders <= 2.2)), (errs, orders)
    assert errs[-1] < 1e-3


def test_constant_rhs_route_matches_default():
    theta = np.array([0.3, -0.2, 0.5, 0.1])
    c, u = reference_solution(theta, 24)
    c2, u2 = _solve(theta, 24, rhs=lambda x, y: np.ones_like(x))
    np.testing.assert_array_equal(c, c2)
    np.testing.assert_allclose(u, u2, rtol=1e-13, atol=0)


@pytest.mark.parametrize("theta", [
    (1.0, 1.0, 1.0, 1.0),
    (-1.0, 1.0, -1.0, 1.0),
    (-1.0, -1.0, -1.0, 1.0),  # the worst corner of the prior (measured)
])
def test_default_grid_converged(theta):
    """DEFAULT_N is within 1e-4 relative L2 of the grid-converged solution."""
    theta = np.array(theta)
    assert _spline_error_estimate(theta, DEFAULT_N) <= 1e-4


@pytest.mark.parametrize("theta", [(-1.0, -1.0, -1.0, 1.0), (1.5, 1.5, 1.5, 1.5)])
def test_error_model_and_extrapolation(theta):
    """The error is in the asymptotic C/n² regime (nested n, 3n estimates), two independent
    estimates agree, and extrapolating to DEFAULT_N — also at the ood corner θ = 1.5 —
    stays ≤ 1e-4; while DEFAULT_N / 2 would not be enough at the worst prior corner."""
    theta = np.array(theta)
    e32 = _nested_error_estimate(theta, 32)
    e64 = _nested_error_estimate(theta, 64)
    assert 3.6 < e32 / e64 < 4.4
    assert abs(_spline_error_estimate(theta, 64) / e64 - 1.0) < 0.05
    assert e64 * (64 / DEFAULT_N) ** 2 <= 1e-4
    if theta[0] < 0:
        assert e64 * (64 / (DEFAULT_N // 2)) ** 2 > 1e-4


def test_symmetry_constant_permeability():
    c, u = reference_solution(np.zeros(4), 48)
    np.testing.assert_allclose(u, u.T, rtol=0, atol=1e-14)  # x ↔ y
    np.testing.assert_allclose(u, u[:, ::-1], rtol=0, atol=1e-14)  # x → 1 − x
    np.testing.assert_allclose(u, u[::-1, :], rtol=0, atol=1e-14)  # y → 1 − y
    assert np.all(u > 0)
    # −Δu = 1 on the unit square: max u = 0.0736713532814... (series solution)
    assert abs(u.max() - 0.07367135328) < 1e-4  # measured 2.5e-5 at n = 48


def test_mirror_symmetry_of_the_field():
    """x → 1 − x flips cos(πx): θ = (θ1, θ2, θ3, θ4) ↦ (−θ1, θ2, −θ3, θ4)."""
    theta = np.array([0.8, -0.3, 0.6, 0.9])
    mirrored = theta * np.array([-1.0, 1.0, -1.0, 1.0])
    _, u = reference_solution(theta, 40)
    _, um = reference_solution(mirrored, 40)
    np.testing.assert_allclose(um, u[:, ::-1], rtol=1e-12, atol=1e-15)


def test_family_reference_shape():
    fam = Darcy()
    g = fam.grid()
    theta = np.array([1.0, -1.0, 1.0, 1.0])
    u = fam.reference(theta)
    c, _ = reference_solution(theta)
    assert fam.n == DEFAULT_N
    np.testing.assert_allclose(c, g["x"], rtol=0, atol=1e-15)
    assert u.shape == (DEFAULT_N, DEFAULT_N)
    assert u.dtype == np.float64
