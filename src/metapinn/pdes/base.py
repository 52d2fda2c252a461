"""The interface every PDE family implements.

A *family* is a parametrised inverse problem: an equation with unknown coefficients θ drawn
from a prior, a domain with boundary/initial conditions, and a reference solver that gives
the true u on a grid. A family module supplies only what is specific to it; the network,
loss, inner loop and datasets are shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Coefficient:
    """One unknown coefficient and its prior.

    Args:
        name: short name used as NetCDF coordinate value (e.g. ``"nu"``).
        low, high: prior support (training/val/test splits).
        ood_low, ood_high: out-of-distribution support (the ``ood`` split).
        log: log-uniform prior and log-parametrisation in the PINN (positive coefficients);
            otherwise uniform prior and raw parametrisation.
        long_name: CF ``long_name``.
    """

    name: str
    low: float
    high: float
    ood_low: float
    ood_high: float
    log: bool
    long_name: str

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"coefficient {self.name}: prior needs low < high")
        if self.log and self.low <= 0:
            raise ValueError(f"coefficient {self.name}: log-uniform prior needs low > 0")

    @property
    def centre(self) -> float:
        """Prior centre: geometric mean for log-uniform, midpoint for uniform
        (docs/design.md §2.2)."""
        if self.log:
            return float(np.sqrt(self.low * self.high))
        return 0.5 * (self.low + self.high)

    def sample(self, rng: np.random.Generator, ood: bool = False) -> float:
        lo, hi = (self.ood_low, self.ood_high) if ood else (self.low, self.high)
        if self.log:
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        return float(rng.uniform(lo, hi))


@dataclass(frozen=True)
class BoundaryData:
    """Boundary/initial conditions sampled for the loss.

    ``points``/``values`` are Dirichlet-type conditions u(p) = g; ``pair_a``/``pair_b`` are
    periodic pairs u(a) = u(b). Empty arrays (shape ``(0, 2)``) where a kind is absent.
    """

    points: np.ndarray
    values: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray


class PDEFamily(ABC):
    """A family of inverse problems. Subclasses set the class attributes and methods.

    Attributes:
        name: registry name (``burgers``, ``cdr``, ``darcy``).
        inputs: names of the network inputs in order, e.g. ``("x", "t")``.
        bounds: ``(low, high)`` per input, same order.
        grid_dims: dims of ``u_ref`` in the dataset, slowest first, e.g. ``("t", "x")``.
        derivatives: input derivatives the residual needs, e.g. ``("u_x", "u_t", "u_xx")``.
        coefficients: the unknowns.
        error_names: names of the ``coef_rel_err`` entries (one per coefficient, or ``("a",)``
            for a field).
        field: True when the coefficients parametrise a field a(x, y).
    """

    name: str
    title: str
    inputs: tuple[str, str]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    grid_dims: tuple[str, str]
    derivatives: tuple[str, ...]
    coefficients: tuple[Coefficient, ...]
    error_names: tuple[str, ...]
    field: bool = False

    # ----- coefficients ------------------------------------------------------------------
    @property
    def coef_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.coefficients)

    def prior_centre(self) -> np.ndarray:
        return np.array([c.centre for c in self.coefficients])

    def sample_coefficients(self, rng: np.random.Generator, ood: bool = False) -> np.ndarray:
        return np.array([c.sample(rng, ood) for c in self.coefficients])

    def to_param(self, theta):
        """Physical θ → the PINN's parameter (log where the coefficient is positive)."""
        mask = [c.log for c in self.coefficients]
        if isinstance(theta, torch.Tensor):
            m = torch.tensor(mask, device=theta.device)
            return torch.where(m, torch.log(torch.where(m, theta, 1.0)), theta)
        theta = np.asarray(theta, dtype=float)
        return np.where(mask, np.log(np.where(mask, theta, 1.0)), theta)

    def from_param(self, p):
        """The PINN's coefficient parameter → physical θ (inverse of :meth:`to_param`)."""
        mask = [c.log for c in self.coefficients]
        if isinstance(p, torch.Tensor):
            m = torch.tensor(mask, device=p.device)
            return torch.where(m, torch.exp(p), p)
        p = np.asarray(p, dtype=float)
        return np.where(mask, np.exp(p), p)

    def coef_errors(self, theta_hat: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Relative error per entry of :attr:`error_names`: |θ̂ − θ|/|θ| per coefficient."""
        theta_hat = np.asarray(theta_hat, dtype=float)
        theta = np.asarray(theta, dtype=float)
        return np.abs(theta_hat - theta) / np.abs(theta)

    # ----- domain and conditions ---------------------------------------------------------
    def sample_interior(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` collocation points uniform in the domain, shape ``(n, 2)``."""
        lo = np.array([b[0] for b in self.bounds])
        hi = np.array([b[1] for b in self.bounds])
        return lo + (hi - lo) * rng.random((n, 2))

    @abstractmethod
    def sample_boundary(self, rng: np.random.Generator, n: int) -> BoundaryData:
        """About ``n`` boundary/initial points with their conditions."""

    @abstractmethod
    def residual(self, d: dict[str, torch.Tensor], theta: torch.Tensor,
                 points: torch.Tensor) -> torch.Tensor:
        """PDE residual R[u; θ] at ``points`` (shape ``(N,)``).

        Args:
            d: ``"u"`` and the entries of :attr:`derivatives`, each shape ``(N,)``.
            theta: physical coefficients, shape ``(n_coef,)``.
            points: the inputs, shape ``(N, 2)`` (needed where the equation has
                space-dependent terms, e.g. Darcy's a(x, y)).
        """

    def operator(self, theta: torch.Tensor) -> dict[str, torch.Tensor | float] | None:
        """The residual's linear differential part L u = Σ c_k ∂_k u, as ``{derivative
        name: c_k}`` (names from :attr:`derivatives`, coefficients scalars or 0-d tensors of
        ``theta``), or ``None``. The loss then propagates L u through the network as one
        stream (``d["Lu"]``, :func:`metapinn.nets.mlp_derivatives`) and computes the
        derivatives of :attr:`derivatives` outside it only; the residual reads L u with
        :meth:`linear_part`."""
        return None

    def linear_part(self, d: dict[str, torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
        """L u of :meth:`operator`: ``d["Lu"]`` where the loss propagated it, else
        Σ c_k d[k] from the individual derivatives (e.g. an exact solution's)."""
        if "Lu" in d:
            return d["Lu"]
        terms = [c * d[k] for k, c in self.operator(theta).items()]
        return sum(terms[1:], terms[0])  # no leading 0 + …

    def ansatz(self, points: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """Optional hard-constraint factor: the PINN's u is g(x)·N(x) instead of N(x).

        Returns ``None`` (plain network) or ``{"u": g, "u_x": g_x, …}`` with g and every
        first and second derivative of g that :attr:`derivatives` involves.
        """
        return None

    # ----- reference ---------------------------------------------------------------------
    @abstractmethod
    def grid(self) -> dict[str, np.ndarray]:
        """The reference grid: 1-D coordinate arrays keyed by :attr:`grid_dims`."""

    @abstractmethod
    def reference(self, theta: np.ndarray) -> np.ndarray:
        """True u on :meth:`grid`, float64, shape ``(len(grid[d0]), len(grid[d1]))``."""

    def grid_points(self) -> np.ndarray:
        """Grid nodes as network inputs, shape ``(n0 * n1, 2)`` in :attr:`inputs` order,
        raveled in C order of :attr:`grid_dims`."""
        g = self.grid()
        mesh = np.meshgrid(g[self.grid_dims[0]], g[self.grid_dims[1]], indexing="ij")
        cols = {self.grid_dims[0]: mesh[0].ravel(), self.grid_dims[1]: mesh[1].ravel()}
        return np.stack([cols[name] for name in self.inputs], axis=1)

    def field_ref(self, theta: np.ndarray) -> np.ndarray | None:
        """True coefficient field on the grid (field families only)."""
        return None
