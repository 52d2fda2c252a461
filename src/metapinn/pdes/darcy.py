"""Darcy flow with an unknown log-permeability field.

    −∇·(a(x, y) ∇u) = f,  f = 1,   (x, y) ∈ [0, 1]²,  u = 0 on ∂Ω,
    a = exp(Σ_{k=1..4} θ_k φ_k(x, y)),  θ_k ~ U[−1, 1]  (ood: U[1, 1.5]),

with φ_k low Fourier modes of amplitude 1/2 (:func:`basis`). Reference solution: second-order
cell-centred finite volumes with a sparse direct solve.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .base import BoundaryData, Coefficient, PDEFamily

N_MODES = 4
# Cells per side of the reference grid. The scheme's relative L2 error is ≈ C/n² with
# C ≈ 4.6 at the worst corner of the prior (θ = ±1) and ≈ 5.5 in the ood box [1, 1.5]⁴, so
# 256 is the smallest power of two converged to ≤ 1e-4 (192 gives ≈ 1.3e-4; see the tests).
DEFAULT_N = 256


def basis(x, y):
    """The four modes φ_k(x, y) and their gradients, numpy or torch.

    Returns:
        ``(phi, phi_x, phi_y)``, each a list of 4 arrays shaped like ``x``.
    """
    lib = torch if isinstance(x, torch.Tensor) else np
    p = np.pi
    cx, sx, cy, sy = lib.cos(p * x), lib.sin(p * x), lib.cos(p * y), lib.sin(p * y)
    phi = [0.5 * cx, 0.5 * cy, 0.5 * cx * cy, 0.5 * sx * sy]
    phi_x = [-0.5 * p * sx, 0 * x, -0.5 * p * sx * cy, 0.5 * p * cx * sy]
    phi_y = [0 * y, -0.5 * p * sy, -0.5 * p * cx * sy, 0.5 * p * sx * cy]
    return phi, phi_x, phi_y


@functools.lru_cache(maxsize=4)
def _cell_centres(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the n × n cell centres (read-only, shared)."""
    centres = (np.arange(n) + 0.5) / n
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def log_permeability(theta, x, y):
    """log a(x, y) = Σ θ_k φ_k and its gradient; numpy or torch (θ indexable)."""
    phi, phi_x, phi_y = basis(x, y)
    la = sum(theta[k] * phi[k] for k in range(N_MODES))
    la_x = sum(theta[k] * phi_x[k] for k in range(N_MODES))
    la_y = sum(theta[k] * phi_y[k] for k in range(N_MODES))
    return la, la_x, la_y


def reference_solution(theta: np.ndarray, n: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """u at the cell centres of an n × n finite-volume grid.

    Args:
        theta: the 4 field coefficients.
        n: cells per side; 0 chooses the converged default.

    Returns:
        ``(centres, u)``: 1-D cell-centre coordinates (same in x and y) and float64 u of
        shape ``(n, n)`` indexed ``[y, x]``.
    """
    return _solve(theta, n or DEFAULT_N)


def _solve(theta, n: int, rhs=None) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centred finite volumes for −∇·(a∇u) = f, u = 0 on ∂[0, 1]².

    Face coefficients are a at the face midpoints; a boundary face couples its cell to
    u = 0 at the half-cell distance h/2. The cell average of f is taken as f at the centre.

    Args:
        theta: the 4 field coefficients of a.
        n: cells per side.
        rhs: ``f(x, y)`` evaluated on arrays (numpy); None for f = 1.

    Returns:
        ``(centres, u)`` as :func:`reference_solution`.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    theta = np.asarray(theta, dtype=float)
    n = int(n)
    if n < 1:
        raise ValueError(f"reference_solution: need n >= 1 cells per side, got {n}")
    h = 1.0 / n
    centres = (np.arange(n) + 0.5) * h
    faces = np.arange(n + 1) * h

    def a(x, y):
        return np.exp(log_permeability(theta, x, y)[0])

    # Face coefficients scaled by 1/h² (interior) or 2/h² (boundary, distance h/2).
    yc, xf = np.meshgrid(centres, faces, indexing="ij")  # vertical faces, shape (n, n + 1)
    ax = a(xf, yc) / h**2
    ax[:, [0, -1]] *= 2.0
    yf, xc = np.meshgrid(faces, centres, indexing="ij")  # horizontal faces, shape (n + 1, n)
    ay = a(xc, yf) / h**2
    ay[[0, -1], :] *= 2.0

    idx = np.arange(n * n).reshape(n, n)  # unknown index of cell [j (y), i (x)]
    diag = ax[:, :-1] + ax[:, 1:] + ay[:-1, :] + ay[1:, :]
    west, east = idx[:, :-1].ravel(), idx[:, 1:].ravel()
    south, north = idx[:-1, :].ravel(), idx[1:, :].ravel()
    cx = ax[:, 1:-1].ravel()
    cy = ay[1:-1, :].ravel()
    rows = np.concatenate([idx.ravel(), west, east, south, north])
    cols = np.concatenate([idx.ravel(), east, west, north, south])
    vals = np.concatenate([diag.ravel(), -cx, -cx, -cy, -cy])
    matrix = coo_matrix((vals, (rows, cols)), shape=(n * n, n * n)).tocsc()

    if rhs is None:
        f = np.ones(n * n)
    else:
        yy, xx = np.meshgrid(centres, centres, indexing="ij")
        f = np.broadcast_to(np.asarray(rhs(xx, yy), dtype=float), (n, n)).ravel()
    u = spsolve(matrix, f, permc_spec="MMD_AT_PLUS_A").reshape(n, n)
    return centres, u


class Darcy(PDEFamily):
    name = "darcy"
    title = "Darcy"
    inputs = ("x", "y")
    bounds = ((0.0, 1.0), (0.0, 1.0))
    grid_dims = ("y", "x")
    derivatives = ("u_x", "u_y", "u_xx", "u_yy")
    coefficients = tuple(
        Coefficient(f"theta{k + 1}", -1.0, 1.0, 1.0, 1.5, log=False,
                    long_name=f"log-permeability mode {k + 1}")
        for k in range(N_MODES)
    )
    error_names = ("a",)
    field = True

    def __init__(self, n: int = 0):
        self.n = n or DEFAULT_N

    def sample_boundary(self, rng, n):
        side = n // 4
        s = rng.uniform(0.0, 1.0, (4, side))
        zeros, ones = np.zeros(side), np.ones(side)
        points = np.concatenate([
            np.stack([s[0], zeros], 1), np.stack([s[1], ones], 1),
            np.stack([zeros, s[2]], 1), np.stack([ones, s[3]], 1),
        ])
        empty = np.zeros((0, 2))
        return BoundaryData(points, np.zeros(len(points)), empty, empty)

    def residual(self, d, theta, points):
        x, y = points[:, 0], points[:, 1]
        la, la_x, la_y = log_permeability(theta, x, y)
        a = torch.exp(la)
        # −∇·(a∇u) − f with ∇a = a ∇log a
        return -a * (self.linear_part(d, theta) + la_x * d["u_x"] + la_y * d["u_y"]) - 1.0

    def operator(self, theta):
        return {"u_xx": 1.0, "u_yy": 1.0}  # Δu

    def ansatz(self, points):
        """g = 16 x(1−x) y(1−y): u = g·N vanishes on ∂Ω exactly (hard Dirichlet condition),
        and g = 1 at the centre, so N has the scale of u."""
        x, y = points[:, 0], points[:, 1]
        px, py = x * (1 - x), y * (1 - y)
        dx, dy = 1 - 2 * x, 1 - 2 * y
        return {"u": 16 * px * py, "u_x": 16 * dx * py, "u_y": 16 * px * dy,
                "u_xx": -32 * py, "u_yy": -32 * px, "u_xy": 16 * dx * dy}

    def grid(self):
        centres = (np.arange(self.n) + 0.5) / self.n
        return {"y": centres, "x": centres}

    def reference(self, theta):
        return reference_solution(np.asarray(theta, dtype=float), self.n)[1]

    def field_ref(self, theta):
        yy, xx = _cell_centres(self.n)
        return np.exp(log_permeability(np.asarray(theta, dtype=float), xx, yy)[0])

    def coef_errors(self, theta_hat, theta):
        a, a_norm = self._true_field(tuple(np.asarray(theta, dtype=float).ravel()))
        return np.array([np.linalg.norm(self.field_ref(theta_hat) - a) / a_norm])

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a few tasks' fields per instance
    def _true_field(self, theta: tuple[float, ...]) -> tuple[np.ndarray, float]:
        """The true field of ``theta`` and its norm, computed once per task (every logged
        step of an evaluation compares the estimate with it)."""
        a = self.field_ref(np.array(theta))
        return a, float(np.linalg.norm(a))
