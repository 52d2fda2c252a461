"""Viscous Burgers' equation with unknown viscosity ν.

    u_t + u u_x − ν u_xx = 0,   x ∈ [−1, 1], t ∈ [0, 1],
    u(x, 0) = −sin(πx),  u(±1, t) = 0,
    ν ~ log-uniform [0.01, 0.1]  (ood: [0.004, 0.01)).

Reference solution: the Cole–Hopf transform, evaluated by quadrature (Basdevant et al.,
1986, "Spectral and finite difference solutions of the Burgers equation").
"""

from __future__ import annotations

import numpy as np
import torch

from .base import BoundaryData, Coefficient, PDEFamily


def reference_solution(nu: float, x: np.ndarray, t: np.ndarray, n_quad: int = 0) -> np.ndarray:
    """Exact u(x, t) by the Cole–Hopf transform, evaluated by quadrature.

    Args:
        nu: viscosity (> 0).
        x: 1-D array of positions in [−1, 1].
        t: 1-D array of times ≥ 0.
        n_quad: number of quadrature nodes; 0 chooses a count converged for ``nu``.

    Returns:
        float64 array of shape ``(len(t), len(x))``.
    """
    raise NotImplementedError  # filled in by the reference-solver work


class Burgers(PDEFamily):
    name = "burgers"
    title = "Burgers"
    inputs = ("x", "t")
    bounds = ((-1.0, 1.0), (0.0, 1.0))
    grid_dims = ("t", "x")
    derivatives = ("u_x", "u_t", "u_xx")
    coefficients = (
        Coefficient("nu", 0.01, 0.1, 0.004, 0.01, log=True, long_name="viscosity"),
    )
    error_names = ("nu",)

    def __init__(self, nx: int = 256, nt: int = 101):
        self.nx, self.nt = nx, nt

    def sample_boundary(self, rng, n):
        n_ic = n // 2
        n_side = (n - n_ic) // 2
        x0 = rng.uniform(-1.0, 1.0, n_ic)
        ic = np.stack([x0, np.zeros(n_ic)], axis=1)
        tb = rng.uniform(0.0, 1.0, 2 * n_side)
        xb = np.concatenate([-np.ones(n_side), np.ones(n_side)])
        sides = np.stack([xb, tb], axis=1)
        points = np.concatenate([ic, sides])
        values = np.concatenate([-np.sin(np.pi * x0), np.zeros(2 * n_side)])
        empty = np.zeros((0, 2))
        return BoundaryData(points, values, empty, empty)

    def residual(self, d, theta, points):
        nu = theta[0]
        return d["u_t"] + d["u"] * d["u_x"] - nu * d["u_xx"]

    def grid(self):
        return {"t": np.linspace(0.0, 1.0, self.nt), "x": np.linspace(-1.0, 1.0, self.nx)}

    def reference(self, theta):
        g = self.grid()
        return reference_solution(float(theta[0]), g["x"], g["t"])
