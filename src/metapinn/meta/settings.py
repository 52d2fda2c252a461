"""The methods' own settings (each a :class:`metapinn.settings.MethodSettings` subclass,
the schema of its ``config/method/<name>.yaml``), kept apart from the methods' torch code
so that reading a configuration (e.g. every Snakefile parse) imports no torch. A method
module imports its class from here; the registry (:mod:`metapinn.meta`) names it."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import MethodSettings


@dataclass(frozen=True)
class TransferSettings(MethodSettings):
    """The transfer baseline's settings: optimiser steps of its training-task solve."""

    transfer_steps: int = 2000

    def __post_init__(self):
        super().__post_init__()
        if self.transfer_steps < 1:
            raise ValueError(f"method.transfer_steps must be ≥ 1, got {self.transfer_steps}")


@dataclass(frozen=True)
class MamlSettings(MethodSettings):
    """MAML's settings; ``first_order`` drops the Jacobian of the inner loop (FOMAML)."""

    first_order: bool = False


@dataclass(frozen=True)
class LeapSettings(MethodSettings):
    """LEAP's settings: ``leap_norm`` the length (d1) instead of the energy (d2),
    ``leap_loss_term`` the loss coordinate of the path, ``leap_stabilise`` Δf ← −|Δf|."""

    leap_norm: bool = True
    leap_loss_term: bool = True
    leap_stabilise: bool = True


@dataclass(frozen=True)
class HypernetSettings(MethodSettings):
    """The hypernetwork's settings: encoder latent size and hidden width."""

    hyper_latent: int = 32
    hyper_width: int = 64

    def __post_init__(self):
        super().__post_init__()
        if min(self.hyper_latent, self.hyper_width) < 1:
            raise ValueError(f"method.hyper_latent and method.hyper_width must be ≥ 1, got "
                             f"{self.hyper_latent}, {self.hyper_width}")
