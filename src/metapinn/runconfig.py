"""The validated settings of one run (:class:`RunConfig`), taken explicitly by every library
function. :func:`metapinn.config.run_config` builds it from the composed configuration."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .pdes.base import PDEFamily
from .settings import AdaptSettings, LossWeights
from .tasks import TaskSettings


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs, validated."""

    pde: PDEFamily
    tasks: TaskSettings
    adapt: AdaptSettings
    weights: LossWeights
    hidden: tuple[int, ...]
    n_collocation: int
    n_boundary: int
    threshold_u: float
    threshold_coef: float
    loss_scale: float
    seed: int
    dtype: torch.dtype
    device: torch.device
    threads: int
    yaml: str  # the resolved configuration, for NetCDF attributes
    digest: str = ""  # of the settings that decide this run's results (config.digest)

    @property
    def widths(self) -> tuple[int, ...]:
        return (2, *self.hidden, 1)


