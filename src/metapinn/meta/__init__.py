"""Meta-learning methods and baselines, one file each, and the registry by name.

Every method supplies only what differs (its meta-gradient or objective, and how a task's
initialisation is made); the inner loop is :func:`metapinn.adapt.adapt` and the outer loop
is :func:`metapinn.metatrain.meta_train`. The registry's order is the order of figures and
tables. Adding a method: its module (a class with ``name``, ``settings`` and the functions
of :mod:`metapinn.meta.base`), a line here, ``config/method/<name>.yaml``, its tests.
"""

from __future__ import annotations

from ..registry import Entry, lookup

METHODS: dict[str, Entry] = {e.name: e for e in (
    Entry("scratch", "transfer:Scratch", "scratch"),
    Entry("transfer", "transfer:Transfer", "transfer"),
    Entry("pretrain", "pretrain:Pretrain", "pretrain"),
    Entry("maml", "maml:MAML", "MAML"),
    Entry("fomaml", "maml:FOMAML", "FOMAML"),
    Entry("reptile", "reptile:Reptile", "Reptile"),
    Entry("leap", "leap:LEAP", "LEAP"),
    Entry("hypernet", "hypernet:HyperNet", "hypernetwork"),
)}


def method_class(name: str):
    """The class of method ``name`` (its module imported now)."""
    return lookup(METHODS, name, "method").load(__name__)


def get_method(name: str):
    """A method object by registry name."""
    return method_class(name)()


def method_settings(name: str, **kwargs):
    """The settings record of method ``name`` (its own subclass of ``MethodSettings``)."""
    return method_class(name).settings(name=name, **kwargs)


__all__ = ["METHODS", "get_method", "method_class", "method_settings"]
