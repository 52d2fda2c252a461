"""The convection–diffusion–reaction reference solver (Strang splitting) against
independent truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from metapinn.pdes.cdr import CDR, TWO_PI, _strang, initial_condition, reference_solution

X = np.linspace(0.0, TWO_PI, 256, endpoint=False)
T = np.linspace(0.0, 1.0, 101)


def spectral_mol(beta, nu, rho, n, t_out):
    """Independent solve: Fourier pseudo-spectral method of lines on the same periodic
    collocation grid, integrated by DOP853. Returns ``(x, u)``, u shaped
    ``(len(t_out), n)``."""
    x = np.linspace(0.0, TWO_PI, n, endpoint=False)
    k = np.fft.rfftfreq(n, d=1.0 / n)
    ik = 1j * k
    ik[-1] = 0.0  # first derivative: drop the Nyquist mode
    lin = -beta * ik - nu * k**2

    def rhs(_t, u):
        return np.fft.irfft(lin * np.fft.rfft(u), n) + rho * u * (1.0 - u)

    sol = solve_ivp(rhs, (0.0, float(t_out[-1])), initial_condition(x), method="DOP853",
                    t_eval=t_out, rtol=1e-12, atol=1e-12)
    assert sol.success
    return x, sol.y.T


@pytest.mark.parametrize("rho", [0.5, 3.0, 8.0])
def test_pure_reaction_is_logistic(rho):
    u = reference_solution(0.0, 0.0, rho, X, T)
    u0 = initial_condition(X)[None, :]
    g = np.exp(rho * T)[:, None]
    exact = u0 * g / (1.0 - u0 + u0 * g)
    assert np.abs(u - exact).max() <= 1e-10


@pytest.mark.parametrize("nu,k", [(0.05, 1), (0.3, 5), (2.0, 3)])
def test_pure_diffusion_of_a_mode(nu, k):
    u0 = np.cos(k * X) + 0.5 * np.sin(k * X)
    u = _strang(u0, 0.0, nu, 0.0, X, T)
    exact = np.exp(-nu * k**2 * T)[:, None] * u0[None, :]
    assert np.abs(u - exact).max() <= 1e-10


def test_convection_diffusion_of_a_mode():
    """With β and ν the mode travels and decays: exp(−νk²t) cos(k(x − βt))."""
    beta, nu, k = 2.3, 0.4, 2
    u = _strang(np.cos(k * X), beta, nu, 0.0, X, T)
    exact = np.exp(-nu * k**2 * T)[:, None] * np.cos(k * (X[None, :] - beta * T[:, None]))
    assert np.abs(u - exact).max() <= 1e-10


@pytest.mark.parametrize("beta", [0.5, 3.0, 8.0])
def test_pure_convection_is_periodic_shift(beta):
    u = reference_solution(beta, 0.0, 0.0, X, T)
    exact = initial_condition(np.mod(X[None, :] - beta * T[:, None], TWO_PI))
    # the periodic extension of the Gaussian has a small kink at 0 ≡ 2π, so the spectral
    # shift carries an O(1/n) Gibbs error: ≈ 8e-6 at 256 points
    assert np.abs(u - exact).max() <= 1e-4


@pytest.mark.parametrize("theta", [(3.0, 1.0, 4.0), (0.5, 2.0, 5.0)])
def test_second_order_in_dt(theta):
    t_out = np.linspace(0.0, 1.0, 11)
    fine = reference_solution(*theta, X, t_out, dt=1e-4)
    errs = [np.abs(reference_solution(*theta, X, t_out, dt=dt) - fine).max()
            for dt in (0.01, 0.005, 0.0025)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all((orders >= 1.8) & (orders <= 2.2)), (errs, orders)


@pytest.mark.parametrize("theta", [
    (1.0, 0.1, 2.0),
    (4.0, 1.5, 4.0),
    (0.7, 2.0, 0.6),
    (2.5, 0.05, 5.0),
])
def test_agrees_with_method_of_lines(theta):
    t_out = np.linspace(0.0, 1.0, 11)
    x, u_mol = spectral_mol(*theta, 128, t_out)
    u = reference_solution(*theta, x, t_out)
    # the default step targets ~1e-7; measured ≤ 6e-8 here
    assert np.abs(u - u_mol).max() <= 3e-7


@pytest.mark.parametrize("theta", [(5.0, 2.0, 5.0), (8.0, 2.0, 8.0), (0.5, 0.02, 8.0)])
def test_default_step_converged(theta):
    """dt = 0 is within ~1e-7 of a far smaller step, at the corners of the prior and ood."""
    u = reference_solution(*theta, X, T)
    fine = reference_solution(*theta, X, T, dt=2.5e-5)
    assert np.abs(u - fine).max() <= 2e-7


def test_outputs_at_irregular_times():
    """The step is fitted to every output interval: results do not depend on which
    intermediate times are requested."""
    theta = (2.0, 0.3, 3.0)
    t_a = np.array([0.0, 0.137, 0.5, 0.9001, 1.0])
    t_b = np.linspace(0.0, 1.0, 11)
    ua = reference_solution(*theta, X, t_a, dt=1e-4)
    ub = reference_solution(*theta, X, t_b, dt=1e-4)
    np.testing.assert_array_equal(ua[0], initial_condition(X))
    assert np.abs(ua[2] - ub[5]).max() < 1e-8
    assert np.abs(ua[-1] - ub[-1]).max() < 1e-8


def test_family_reference_shape():
    fam = CDR()
    g = fam.grid()
    u = fam.reference(np.array([8.0, 2.0, 8.0]))
    assert u.shape == (len(g["t"]), len(g["x"]))
    assert u.dtype == np.float64
    np.testing.assert_array_equal(u[0], initial_condition(g["x"]))
