"""The Burgers reference solver (Cole–Hopf quadrature) against independent truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from metapinn.pdes.burgers import Burgers, _default_nodes, _half_width, reference_solution

X = np.linspace(-1.0, 1.0, 256)
T = np.linspace(0.0, 1.0, 101)
NUS = (0.004, 0.01, 0.02, 0.05, 0.1)


def _default_node_count(nu: float) -> int:
    """The node count ``n_quad=0`` picks on the grid ``T`` (checked to be the one used)."""
    n = _default_nodes(_half_width(1.0 / (2.0 * np.pi * nu)), float(T.max()))
    assert np.array_equal(reference_solution(nu, X, T, n_quad=n), reference_solution(nu, X, T))
    return n


def spectral_burgers(nu: float, n: int, t_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent solve: Fourier pseudo-spectral method of lines on the 2-periodic odd
    extension of the Dirichlet problem (u(±1) = 0 holds by oddness), integrated by
    DOP853 with tight tolerances. Returns ``(x, u)`` with u of shape ``(len(t_out), n)``."""
    x = -1.0 + 2.0 * np.arange(n) / n
    k = np.pi * np.fft.rfftfreq(n, d=1.0 / n)  # angular wavenumbers, period 2
    ik = 1j * k
    ik[-1] = 0.0  # odd derivative: drop the Nyquist mode
    lam = nu * k**2

    def rhs(_t, u):
        uh = np.fft.rfft(u)
        return np.fft.irfft(-0.5 * ik * np.fft.rfft(u * u) - lam * uh, n)

    sol = solve_ivp(rhs, (0.0, float(t_out[-1])), -np.sin(np.pi * x), method="DOP853",
                    t_eval=t_out, rtol=1e-10, atol=1e-12)
    assert sol.success
    return x, sol.y.T


@pytest.mark.parametrize("nu", NUS)
def test_quadrature_converged_in_nodes(nu):
    """Doubling the default node count changes u by < 1e-8 on the full 101 × 256 grid,
    while too few nodes visibly do not (so the comparison has teeth)."""
    n = _default_node_count(nu)
    u = reference_solution(nu, X, T)
    u2 = reference_solution(nu, X, T, n_quad=2 * n)
    assert np.all(np.isfinite(u))
    assert np.abs(u2 - u).max() < 1e-8
    coarse = reference_solution(nu, X, T, n_quad=n // 4)
    assert np.abs(coarse - u).max() > 1e-6


@pytest.mark.parametrize("nu,n", [(0.004, 1024), (0.01, 512), (0.02, 256), (0.1, 128)])
def test_agrees_with_spectral_method_of_lines(nu, n):
    t_out = np.array([0.5, 1.0])
    x, u_mol = spectral_burgers(nu, n, t_out)
    u = reference_solution(nu, x, t_out)
    err = np.abs(u - u_mol).max(axis=1)
    assert np.all(err <= 1e-7), err  # measured ≈ 1e-9 (ν = 0.004) to 1e-11


def test_initial_condition_exact():
    u = reference_solution(0.03, X, np.array([0.0, 0.5, 0.0]))
    np.testing.assert_array_equal(u[0], -np.sin(np.pi * X))
    np.testing.assert_array_equal(u[2], -np.sin(np.pi * X))


@pytest.mark.parametrize("nu", NUS)
def test_boundary_and_antisymmetry(nu):
    u = reference_solution(nu, X, T)
    assert np.abs(u[:, [0, -1]]).max() < 1e-12
    np.testing.assert_allclose(u[:, ::-1], -u, rtol=0, atol=1e-12)
    # sanity on the physics: |u| never exceeds the initial amplitude and decays in time
    assert np.abs(u).max() <= 1.0 + 1e-12
    assert np.abs(u[-1]).max() < np.abs(u[1]).max()


def test_shock_forms_at_x0_for_small_nu():
    """For small ν a steep front at x = 0 appears after t ≈ 1/π: slope there ≈ −1/(2ν)·u∞."""
    nu = 0.01
    x = np.array([-1e-4, 1e-4])
    u = reference_solution(nu, x, np.array([1.0]))[0]
    slope = (u[1] - u[0]) / 2e-4
    assert slope < -20.0


def test_family_reference_shape():
    fam = Burgers()
    g = fam.grid()
    u = fam.reference(np.array([0.004]))
    assert u.shape == (len(g["t"]), len(g["x"]))
    assert u.dtype == np.float64


def test_classic_shock_benchmark_slope():
    """ν = 0.01/π (the Raissi et al. shock case, outside the family's prior): the steepest
    slope at x = 0 is |u_x| = 152.00516 at t = 1.6037/π (Basdevant et al. 1986, Table 1,
    a value obtained there by several independent methods)."""
    from scipy.optimize import minimize_scalar

    nu, h = 0.01 / np.pi, 1e-5

    def slope(t):
        u = reference_solution(nu, np.array([-h, h]), np.array([t]))[0]
        return (u[1] - u[0]) / (2 * h)

    r = minimize_scalar(slope, bounds=(0.45, 0.56), method="bounded", options={"xatol": 1e-7})
    assert -r.fun == pytest.approx(152.00516, rel=5e-6)
    assert r.x * np.pi == pytest.approx(1.6037, abs=2e-4)


def test_shock_observations_lie_on_the_classic_grid():
    from metapinn.pdes.burgers import SHOCK_NU, shock_observations

    pts, clean = shock_observations(500, noise=0.0, seed=1)
    x, t = pts[:, 0], pts[:, 1]
    assert np.allclose(np.round((x + 1) * 255 / 2), (x + 1) * 255 / 2)  # 256 nodes in x
    assert np.allclose(np.round(t * 100), t * 100) and t.max() <= 0.99  # t = 0, …, 0.99
    assert len(np.unique(pts, axis=0)) == 500
    i = np.argmin(t)
    assert clean[i] == pytest.approx(
        reference_solution(SHOCK_NU, x[i:i + 1], t[i:i + 1])[0, 0], abs=1e-12)
    _, noisy = shock_observations(500, noise=0.01, seed=1)
    u = reference_solution(SHOCK_NU, np.linspace(-1, 1, 256), np.linspace(0, 0.99, 100))
    assert np.std(noisy - clean) == pytest.approx(0.01 * np.std(u), rel=0.15)
    with pytest.raises(ValueError, match="n_obs"):
        shock_observations(30000)
