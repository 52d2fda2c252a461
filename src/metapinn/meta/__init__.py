"""Meta-learning methods and baselines, one file each, and the registry by name.

Every method supplies only what differs (its meta-gradient or objective, and how a task's
initialisation is made); the inner loop is :func:`metapinn.adapt.adapt` and the outer loop
is :func:`metapinn.metatrain.meta_train`. The registry's order is the order of figures and
tables. Adding a method: its module (a class with ``name``, ``settings`` and the functions
of :mod:`metapinn.meta.base`), its settings class in :mod:`metapinn.meta.settings` if it
has settings of its own, a line here, ``config/method/<name>.yaml``, its tests.
"""

from __future__ import annotations

from ..registry import Entry, lookup

METHODS: dict[str, Entry] = {e.name: e for e in (
    Entry("scratch", "transfer:Scratch", "scratch"),
    Entry("scratch_alt", "transfer:ScratchAlt", "scratch, 2nd init (null)"),
    Entry("scratch_lbfgs", "transfer:ScratchLbfgs", "scratch + L-BFGS",
          "settings:ScratchLbfgsSettings"),
    Entry("transfer", "transfer:Transfer", "transfer", "settings:TransferSettings"),
    Entry("pretrain", "pretrain:Pretrain", "pretrain", "settings:PretrainSettings"),
    Entry("conditional", "conditional:Conditional", "conditional",
          "settings:ConditionalSettings"),
    Entry("maml", "maml:MAML", "MAML", "settings:MamlSettings"),
    Entry("fomaml", "maml:FOMAML", "FOMAML", "settings:MamlSettings"),
    Entry("metasgd", "metasgd:MetaSGD", "Meta-SGD", "settings:MetaSgdSettings"),
    Entry("imaml", "imaml:IMAML", "iMAML", "settings:ImamlSettings"),
    Entry("reptile", "reptile:Reptile", "Reptile", "settings:ReptileSettings"),
    Entry("leap", "leap:LEAP", "LEAP", "settings:LeapSettings"),
    Entry("hypernet", "hypernet:HyperNet", "hypernetwork", "settings:HypernetSettings"),
)}


# methods trained at the adaptation rate tuned for scratch: the baselines fitted by plain
# training, and Meta-SGD, whose learned step multipliers are relative to that rate (their
# meta-train jobs read the tune file; MethodSettings.at_tuned_rate says how each uses it)
TUNED_RATE_METHODS = ("transfer", "pretrain", "metasgd")


def method_class(name: str):
    """The class of method ``name`` (its module imported now)."""
    return lookup(METHODS, name, "method").load(__name__)


def get_method(name: str):
    """A method object by registry name."""
    return method_class(name)()


def settings_class(name: str):
    """The settings class of method ``name`` (read without importing its torch code)."""
    entry = lookup(METHODS, name, "method")
    if not entry.settings:
        from ..settings import MethodSettings

        return MethodSettings
    return entry.load(__name__, entry.settings)


def method_settings(name: str, **kwargs):
    """The settings record of method ``name`` (its own subclass of ``MethodSettings``)."""
    return settings_class(name)(name=name, **kwargs)


__all__ = ["METHODS", "TUNED_RATE_METHODS", "get_method", "method_class", "method_settings",
           "settings_class"]
