"""Convection–diffusion–reaction with unknown β, ν, ρ.

    u_t + β u_x − ν u_xx − ρ u (1 − u) = 0,   x ∈ [0, 2π) periodic, t ∈ [0, 1],
    u(x, 0) = exp(−(x − π)² / (2 (π/4)²)),
    β ~ log-U[0.5, 5], ν ~ log-U[0.05, 2], ρ ~ log-U[0.5, 5].

Reference solution: pseudo-spectral Strang splitting — the linear convection–diffusion
step is exact in Fourier space, the logistic reaction step is exact pointwise.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import BoundaryData, Coefficient, PDEFamily

TWO_PI = 2.0 * np.pi


def initial_condition(x):
    """u(x, 0) = exp(−(x − π)² / (2 (π/4)²)); numpy or torch."""
    lib = torch if isinstance(x, torch.Tensor) else np
    return lib.exp(-((x - np.pi) ** 2) / (2.0 * (np.pi / 4.0) ** 2))


def reference_solution(beta: float, nu: float, rho: float, x: np.ndarray, t: np.ndarray,
                       dt: float = 0.0) -> np.ndarray:
    """u(x, t) by pseudo-spectral Strang splitting.

    Args:
        beta, nu, rho: convection speed, diffusivity, reaction rate (≥ 0).
        x: uniform periodic grid on [0, 2π) (endpoint excluded).
        t: 1-D array of output times ≥ 0, increasing.
        dt: time step; 0 chooses a step converged for the given coefficients.

    Returns:
        float64 array of shape ``(len(t), len(x))``.
    """
    x = np.asarray(x, dtype=float).ravel()
    return _strang(initial_condition(x), beta, nu, rho, x, t, dt)


# Step selection for dt = 0. Strang splitting's global error is C·dt², with C set by the
# commutator of the diffusion and reaction operators (convection commutes with both, so β
# does not enter). Measured over ν ∈ [0.02, 2], ρ ∈ [0.5, 8] on 256 points, t ∈ [0, 1]:
# C ≤ 0.025·ρ·(ρ/8 + ν); the bound below has a margin on that and targets 1e-7.
_DT_MAX = 1e-3
_DT_TARGET = 1e-7


def _default_dt(beta: float, nu: float, rho: float) -> float:
    """A Strang step whose error is about 1e-7 or less for these coefficients."""
    c_bound = 0.03 * abs(rho) * (abs(rho) / 8.0 + abs(nu))
    if c_bound <= 0:
        return _DT_MAX
    return min(_DT_MAX, float(np.sqrt(_DT_TARGET / c_bound)))


def _strang(u0: np.ndarray, beta: float, nu: float, rho: float, x: np.ndarray,
            t: np.ndarray, dt: float = 0.0) -> np.ndarray:
    """Strang splitting from an arbitrary initial profile ``u0`` on the periodic grid ``x``.

    Per step: half a linear (convection–diffusion) step, exact in Fourier space; a full
    logistic reaction step, exact pointwise; half a linear step. Within each output interval
    the step is shrunk so that a whole number of steps fits it exactly, and consecutive
    half linear steps are merged into one full step.

    Returns:
        float64 array of shape ``(len(t), len(x))``.
    """
    x = np.asarray(x, dtype=float).ravel()
    t = np.asarray(t, dtype=float).ravel()
    beta, nu, rho = float(beta), float(nu), float(rho)
    u = np.array(u0, dtype=float).ravel()
    n = x.size
    if u.size != n:
        raise ValueError("_strang: u0 and x must have the same length")
    if np.any(t < 0) or np.any(np.diff(t) < 0):
        raise ValueError("reference_solution: output times must be >= 0 and increasing")
    if dt <= 0:
        dt = _default_dt(beta, nu, rho)
    length = n * (x[1] - x[0]) if n > 1 else TWO_PI
    k = TWO_PI * np.fft.rfftfreq(n, d=length / n)  # angular wavenumbers
    symbol = -1j * beta * k - nu * k**2
    if n % 2 == 0:
        # The Nyquist mode cannot carry a travelling wave on the grid: keep the real
        # (diffusive) part only, so the linear step maps real fields to real fields.
        symbol[-1] = -nu * k[-1] ** 2

    def lin(h):
        return np.exp(symbol * h)

    def react(v, h):
        g = np.exp(rho * h)
        return v * g / (1.0 - v + v * g)

    out = np.empty((t.size, n))
    t_now = 0.0
    for i, t_target in enumerate(t):
        span = t_target - t_now
        if span > 0:
            m = max(1, int(np.ceil(span / dt * (1.0 - 1e-12))))
            h = span / m
            half, full = lin(0.5 * h), lin(h)
            uh = np.fft.rfft(u) * half
            for j in range(m):
                u = react(np.fft.irfft(uh, n), h)
                uh = np.fft.rfft(u) * (full if j < m - 1 else half)
            u = np.fft.irfft(uh, n)
            t_now = t_target
        out[i] = u
    return out


class CDR(PDEFamily):
    name = "cdr"
    title = "Convection–diffusion–reaction"
    inputs = ("x", "t")
    bounds = ((0.0, TWO_PI), (0.0, 1.0))
    grid_dims = ("t", "x")
    derivatives = ("u_x", "u_t", "u_xx")
    coefficients = (
        Coefficient("beta", 0.5, 5.0, 5.0, 8.0, log=True, long_name="convection speed"),
        Coefficient("nu", 0.05, 2.0, 0.02, 0.05, log=True, long_name="diffusivity"),
        Coefficient("rho", 0.5, 5.0, 5.0, 8.0, log=True, long_name="reaction rate"),
    )
    error_names = ("beta", "nu", "rho")

    def __init__(self, nx: int = 256, nt: int = 101):
        self.nx, self.nt = nx, nt

    def sample_boundary(self, rng, n):
        n_ic = n // 2
        n_per = n - n_ic
        x0 = rng.uniform(0.0, TWO_PI, n_ic)
        points = np.stack([x0, np.zeros(n_ic)], axis=1)
        tp = rng.uniform(0.0, 1.0, n_per)
        pair_a = np.stack([np.zeros(n_per), tp], axis=1)
        pair_b = np.stack([np.full(n_per, TWO_PI), tp], axis=1)
        return BoundaryData(points, initial_condition(x0), pair_a, pair_b)

    def operator(self, theta):
        return {"u_t": 1.0, "u_x": theta[0], "u_xx": -theta[1]}  # u_t + β u_x − ν u_xx

    def residual(self, d, theta, points):
        u = d["u"]
        return self.linear_part(d, theta) - theta[2] * u * (1.0 - u)

    def grid(self):
        return {"t": np.linspace(0.0, 1.0, self.nt),
                "x": np.linspace(0.0, TWO_PI, self.nx, endpoint=False)}

    def reference(self, theta):
        g = self.grid()
        return reference_solution(*map(float, theta), g["x"], g["t"])
