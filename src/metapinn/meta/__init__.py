"""Meta-learning methods, one file each, and a registry by name.

Every method supplies only what differs (its meta-gradient or objective, and how a task's
initialisation is made); the inner loop is :func:`metapinn.adapt.adapt` and the outer loop
is :func:`metapinn.metatrain.meta_train`.
"""

from __future__ import annotations

from .base import Context, MetaSettings, MetaTask, meta_task
from .hypernet import HyperNet
from .leap import LEAP
from .maml import FOMAML, MAML
from .pretrain import Pretrain
from .reptile import Reptile
from .transfer import Scratch, Transfer

METHODS = {cls.name: cls for cls in (Scratch, Transfer, Pretrain, MAML, FOMAML, Reptile, LEAP,
                                      HyperNet)}


def get_method(name: str):
    """A method object by registry name."""
    try:
        return METHODS[name]()
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(METHODS)}") \
            from None


__all__ = ["METHODS", "Context", "MetaSettings", "MetaTask", "get_method", "meta_task"]
