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
    raise NotImplementedError  # filled in by the reference-solver work


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

    def residual(self, d, theta, points):
        beta, nu, rho = theta[0], theta[1], theta[2]
        u = d["u"]
        return d["u_t"] + beta * d["u_x"] - nu * d["u_xx"] - rho * u * (1.0 - u)

    def grid(self):
        return {"t": np.linspace(0.0, 1.0, self.nt),
                "x": np.linspace(0.0, TWO_PI, self.nx, endpoint=False)}

    def reference(self, theta):
        g = self.grid()
        return reference_solution(*map(float, theta), g["x"], g["t"])
