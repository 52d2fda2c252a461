"""Registry entries: a name, where its implementation lives, and how figures and tables
show it. The tables themselves are in :mod:`metapinn.pdes` (families) and
:mod:`metapinn.meta` (methods); implementations are imported on first use, so reading a
registry (titles, orders, colours) costs no torch import."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One registered family or method.

    Args:
        name: the registry (and configuration) name.
        target: ``"module:Class"`` relative to the registry's package.
        title: how figures and tables name it.
        settings: ``"module:Class"`` of a method's settings record, in a module that
            imports no torch (empty: the base ``MethodSettings``).
    """

    name: str
    target: str
    title: str
    settings: str = ""

    def load(self, package: str, target: str | None = None):
        """The implementing class (imported now), or the class named by ``target``."""
        module, _, cls = (target or self.target).partition(":")
        return getattr(importlib.import_module(f"{package}.{module}"), cls)


def lookup(table: dict[str, Entry], name: str, what: str) -> Entry:
    """``table[name]``, or a ValueError listing the valid choices."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; valid choices: {', '.join(table)}") \
            from None


def titles(table: dict[str, Entry]) -> dict[str, str]:
    return {name: e.title for name, e in table.items()}
