"""PDE families: one module each, and the registry by name (the order of figures and
tables). Adding a family: its module, a line here, ``config/pde/<name>.yaml``, its tests."""

from __future__ import annotations

from ..registry import Entry, lookup

FAMILIES: dict[str, Entry] = {e.name: e for e in (
    Entry("burgers", "burgers:Burgers", "Burgers"),
    Entry("cdr", "cdr:CDR", "Convection–diffusion–reaction"),
    Entry("darcy", "darcy:Darcy", "Darcy"),
)}


def get_pde(name: str, **kwargs):
    """Instantiate the family ``name`` (grid settings as keyword arguments)."""
    return lookup(FAMILIES, name, "PDE family").load(__name__)(**kwargs)


__all__ = ["FAMILIES", "get_pde"]
