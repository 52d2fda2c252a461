"""Viscous Burgers' equation with unknown viscosity ν.

    u_t + u u_x − ν u_xx = 0,   x ∈ [−1, 1], t ∈ [0, 1],
    u(x, 0) = −sin(πx),  u(±1, t) = 0,
    ν ~ log-uniform [0.01, 0.1]  (ood: [0.004, 0.01)).

Reference solution: the Cole–Hopf transform, evaluated by quadrature (Basdevant et al.,
1986, "Spectral and finite difference solutions of the Burgers equation").
"""

from __future__ import annotations

import numpy as np

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
    x = np.asarray(x, dtype=float).ravel()
    t = np.asarray(t, dtype=float).ravel()
    nu = float(nu)
    if not nu > 0:
        raise ValueError(f"reference_solution: nu must be > 0, got {nu}")
    if np.any(t < 0):
        raise ValueError("reference_solution: times must be >= 0")
    kappa = 1.0 / (2.0 * np.pi * nu)
    half_width = _half_width(kappa)
    if n_quad <= 0:
        n_quad = _default_nodes(half_width, float(t.max(initial=0.0)))
    # Trapezoidal nodes in the Gaussian-scaled variable s = η / sqrt(4νt), symmetric about 0.
    s = np.linspace(-half_width, half_width, int(n_quad))
    out = np.empty((t.size, x.size))
    for i, ti in enumerate(t):
        if ti == 0.0:
            out[i] = -np.sin(np.pi * x)
            continue
        y = x[:, None] - 2.0 * np.sqrt(nu * ti) * s[None, :]  # x − η
        expo = -(s**2)[None, :] - kappa * np.cos(np.pi * y)
        w = np.exp(expo - expo.max(axis=1, keepdims=True))
        out[i] = -np.sum(np.sin(np.pi * y) * w, axis=1) / np.sum(w, axis=1)
    return out


def _half_width(kappa: float) -> float:
    """Half-width S of the s-interval so that the dropped tails are negligible.

    The integrand is e^{−s²} f with e^{−κ} ≤ f ≤ e^{κ} (κ = 1/(2πν)), so the dropped tail
    relative to the denominator is at most ~e^{2κ − S²}; S² = 2κ + 50 makes it < 1e-21.
    """
    return float(np.sqrt(2.0 * kappa + 50.0))


def _default_nodes(half_width: float, t_max: float) -> int:
    """Converged node count for the trapezoidal rule on [−S, S].

    In s the integrand's peaks have curvature ≤ 2 + 2πt (the Gaussian's 2 plus the peak of f,
    whose width in s is 1/sqrt(2πt) independent of ν), so a spacing proportional to
    1/sqrt(2 + 2πt) resolves them; the trapezoidal rule then converges geometrically.
    """
    h = _NODE_SPACING / np.sqrt(2.0 + 2.0 * np.pi * max(t_max, 1.0))
    return int(np.ceil(2.0 * half_width / h)) + 1


_NODE_SPACING = 0.5  # spacing of the trapezoidal nodes at unit curvature (see _default_nodes)


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

    def operator(self, theta):
        return {"u_t": 1.0, "u_xx": -theta[0]}  # u_t − ν u_xx

    def residual(self, d, theta, points):
        return self.linear_part(d, theta) + d["u"] * d["u_x"]

    def grid(self):
        return {"t": np.linspace(0.0, 1.0, self.nt), "x": np.linspace(-1.0, 1.0, self.nx)}

    def reference(self, theta):
        g = self.grid()
        return reference_solution(float(theta[0]), g["x"], g["t"])


SHOCK_NU = 0.01 / np.pi  # the classic shock case (Raissi et al. 2019), outside the prior


def shock_grid() -> tuple[np.ndarray, np.ndarray]:
    """The classic shock benchmark's 256 × 100 grid: x ∈ [−1, 1], t = 0, 0.01, …, 0.99."""
    return np.linspace(-1.0, 1.0, 256), np.linspace(0.0, 0.99, 100)


def shock_observations(n_obs: int = 2000, noise: float = 0.01, seed: int = 0,
                       nu: float = SHOCK_NU) -> tuple[np.ndarray, np.ndarray]:
    """Observations of the classic Burgers shock benchmark (Raissi, Perdikaris & Karniadakis
    2019): u(x, 0) = −sin πx, ν = 0.01/π, on the 256 × 100 grid x ∈ [−1, 1],
    t = 0, 0.01, …, 0.99, from this module's Cole–Hopf reference.

    Args:
        n_obs: grid nodes drawn without replacement (at most 25,600).
        noise: Gaussian noise standard deviation relative to std(u) over the grid.
        seed: seed of the draw and the noise.
        nu: viscosity.

    Returns:
        points ``(n_obs, 2)`` as network inputs (x, t) and the noisy values ``(n_obs,)``.
    """
    x, t = shock_grid()
    if not 1 <= n_obs <= x.size * t.size:
        raise ValueError(f"n_obs must be in [1, {x.size * t.size}], got {n_obs}")
    if noise < 0:
        raise ValueError(f"noise must be ≥ 0, got {noise}")
    u = reference_solution(nu, x, t)
    rng = np.random.default_rng(seed)
    pick = rng.choice(u.size, size=n_obs, replace=False)
    ti, xi = np.unravel_index(pick, u.shape)
    values = u.ravel()[pick] + noise * np.std(u) * rng.standard_normal(n_obs)
    return np.stack([x[xi], t[ti]], axis=1), values
