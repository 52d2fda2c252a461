"""PDE families: a registry by name."""

from __future__ import annotations

from .base import BoundaryData, Coefficient, PDEFamily
from .burgers import Burgers
from .cdr import CDR
from .darcy import Darcy

FAMILIES: dict[str, type[PDEFamily]] = {"burgers": Burgers, "cdr": CDR, "darcy": Darcy}


def get_pde(name: str, **kwargs) -> PDEFamily:
    """Instantiate the family ``name`` (grid settings as keyword arguments)."""
    try:
        cls = FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown PDE family {name!r}; valid choices: {', '.join(sorted(FAMILIES))}"
        ) from None
    return cls(**kwargs)


__all__ = ["FAMILIES", "BoundaryData", "Coefficient", "PDEFamily", "get_pde"]
