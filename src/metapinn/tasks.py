"""Tasks: one PDE instance with unknown coefficients and noisy observations (docs/design.md §2.1).

Every random draw comes from a generator derived from ``(seed, task index, stream)``, so a
task is the same whatever other tasks are generated with it. The dataset of a family is an
``xarray.Dataset`` written to ``results/<exp>/tasks/<pde>.nc`` (docs/design.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from .ncio import read_netcdf
from .pdes.base import PDEFamily
from .settings import COLLOCATION, SPLITS, TaskSplits

# independent random streams per task
STREAM_TASK = 0  # coefficients, observation locations, noise
STREAM_POINTS = 1  # collocation and boundary points of the solver


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one (seed, task, stream); explicit, order-independent."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and task index must be ≥ 0, got seed={seed}, index={index}")
    return np.random.default_rng([seed, index, stream])


@dataclass(frozen=True)
class TaskSettings(TaskSplits):
    """How a family's task dataset is drawn: the splits (config node ``tasks``, with the
    dataset seed) and the family's observations.

    Args:
        n_obs: observations per task, drawn without replacement from the reference grid.
        noise: Gaussian noise standard deviation relative to std(u_ref).
    """

    n_obs: int = 200
    noise: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        if self.n_obs < 1:
            raise ValueError("pde.n_obs must be ≥ 1 (an inverse problem needs observations)")
        if self.noise < 0:
            raise ValueError(f"pde.noise must be ≥ 0, got {self.noise}")

    @property
    def n_tasks(self) -> int:
        return self.n_train + self.n_val + self.n_test + self.n_ood

    def split_of(self, index: int) -> str:
        edges = np.cumsum([self.n_train, self.n_val, self.n_test, self.n_ood])
        if not 0 <= index < edges[-1]:
            raise ValueError(f"task index {index} outside 0..{edges[-1] - 1}")
        return SPLITS[int(np.searchsorted(edges, index, side="right"))]


@dataclass(frozen=True, eq=False)
class Task:
    """One inverse problem: true coefficients, reference solution, observations."""

    pde: str
    index: int
    split: str
    coefficients: np.ndarray  # (n_coef,) true θ
    u_ref: np.ndarray  # on pde.grid(), shape of grid_dims
    obs_points: np.ndarray  # (n_obs, 2), network-input order
    obs_values: np.ndarray  # (n_obs,), noisy


def make_task(pde: PDEFamily, index: int, settings: TaskSettings,
              coefficients: np.ndarray | None = None) -> Task:
    """Draw task ``index`` of the family (or use the given ``coefficients``)."""
    rng = rng_for(settings.seed, index, STREAM_TASK)
    split = settings.split_of(index)
    theta = pde.sample_coefficients(rng, ood=split == "ood")
    if coefficients is not None:
        theta = np.asarray(coefficients, dtype=float)
        if theta.shape != (len(pde.coefficients),):
            raise ValueError(f"{pde.name} has coefficients {pde.coef_names}, got {theta}")
    u_ref = pde.reference(theta)
    pts = pde.grid_points()
    if settings.n_obs > len(pts):
        raise ValueError(f"pde.n_obs={settings.n_obs} exceeds the {len(pts)} nodes of the "
                         f"{pde.name} reference grid")
    pick = np.sort(rng.choice(len(pts), settings.n_obs, replace=False))
    clean = u_ref.ravel()[pick]
    noisy = clean + settings.noise * np.std(u_ref) * rng.standard_normal(settings.n_obs)
    return Task(pde.name, index, split, theta, u_ref, pts[pick], noisy)


def generate_tasks(pde: PDEFamily, settings: TaskSettings) -> list[Task]:
    """All tasks of the family, in split order train, val, test, ood."""
    return [make_task(pde, i, settings) for i in range(settings.n_tasks)]


def tasks_to_dataset(pde: PDEFamily, tasks: list[Task], settings: TaskSettings) -> xr.Dataset:
    """Tasks → the ``tasks/<pde>.nc`` layout of docs/design.md §5."""
    g = pde.grid()
    d0, d1 = pde.grid_dims
    coords = {
        "task": ("task", np.array([t.index for t in tasks]), {"long_name": "task index"}),
        "coef": ("coef", np.array(pde.coef_names, dtype=object),
                 {"long_name": "coefficient name"}),
        "obs": ("obs", np.arange(settings.n_obs), {"long_name": "observation index"}),
        d0: (d0, g[d0], {"long_name": d0, "units": "1"}),
        d1: (d1, g[d1], {"long_name": d1, "units": "1"}),
    }
    data = {
        "coefficients": (("task", "coef"), np.stack([t.coefficients for t in tasks]),
                         {"long_name": "true coefficients", "units": "1"}),
        "u_ref": (("task", d0, d1), np.stack([t.u_ref for t in tasks]),
                  {"long_name": "reference solution u", "units": "1"}),
        "obs_u": (("task", "obs"), np.stack([t.obs_values for t in tasks]),
                  {"long_name": "observed u (noisy)", "units": "1"}),
        "split": (("task",), np.array([t.split for t in tasks], dtype=object),
                  {"long_name": "split (train, val, test, ood)", "units": "1"}),
    }
    for k, name in enumerate(pde.inputs):
        data[f"obs_{name}"] = (("task", "obs"), np.stack([t.obs_points[:, k] for t in tasks]),
                               {"long_name": f"observation {name}", "units": "1"})
    if pde.field:
        data["a_ref"] = (("task", d0, d1), np.stack([pde.field_ref(t.coefficients) for t in tasks]),
                         {"long_name": "true coefficient field a", "units": "1"})
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({
        "pde": pde.name, "seed": settings.seed, "n_obs": settings.n_obs,
        "noise": settings.noise, "inputs": " ".join(pde.inputs),
    })
    return ds


def load_tasks(path, pde: str) -> xr.Dataset:
    """A tasks NetCDF, checked to be one (:data:`metapinn.ncio.KINDS`) and to hold tasks of
    the family ``pde``."""
    ds = read_netcdf(path, "generate-tasks")
    if str(ds.attrs.get("pde")) != pde:
        raise ValueError(f"{path} holds {ds.attrs.get('pde')!r} tasks, not {pde!r}")
    return ds


def split_indices(ds: xr.Dataset, splits) -> list[int]:
    """Indices of the dataset's tasks whose split is in ``splits``, in file order."""
    return [int(i) for i, s in zip(ds.task.values, ds.split.values, strict=True)
            if str(s) in splits]


def task_from_dataset(ds: xr.Dataset, index: int) -> Task:
    """The task with index ``index`` from a dataset written by :func:`tasks_to_dataset`."""
    if index not in ds["task"].values:
        raise ValueError(f"task {index} is not in the dataset (tasks "
                         f"{int(ds.task.min())}..{int(ds.task.max())})")
    t = ds.sel(task=index)
    inputs = str(ds.attrs["inputs"]).split()
    obs = np.stack([t[f"obs_{name}"].values for name in inputs], axis=1)
    return Task(str(ds.attrs["pde"]), int(index), str(t["split"].values),
                t["coefficients"].values.astype(float), t["u_ref"].values.astype(float),
                obs, t["obs_u"].values.astype(float))


def task_tensors(pde: PDEFamily, task: Task, n_collocation: int, n_boundary: int, seed: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 stream: int = STREAM_POINTS,
                 collocation: str = "random") -> dict[str, torch.Tensor]:
    """The tensors of one task's loss; collocation/boundary points from (seed, task, stream).

    Args:
        pde: the family.
        task: the task (observations).
        n_collocation, n_boundary: point counts (boundary split over the conditions).
        seed: solver seed (independent of the dataset seed's task stream).
        stream: random stream of the points (meta-training draws query points from another).
        collocation: where the residual is enforced: ``random`` (``n_collocation`` points
            drawn over the domain), ``observations`` (at the task's observation points, as
            Raissi et al. 2019 do for inverse problems) or ``both``. The boundary points are
            the same whichever is chosen.
    """
    if n_collocation < 1 or n_boundary < 4:
        raise ValueError(f"need n_collocation ≥ 1 and n_boundary ≥ 4, "
                         f"got {n_collocation}, {n_boundary}")
    if collocation not in COLLOCATION:
        raise ValueError(f"unknown collocation {collocation!r}; valid choices: "
                         f"{', '.join(COLLOCATION)}")
    rng = rng_for(seed, task.index, stream)
    colloc = pde.sample_interior(rng, n_collocation)
    bc = pde.sample_boundary(rng, n_boundary)
    if collocation == "observations":
        colloc = task.obs_points
    elif collocation == "both":
        colloc = np.concatenate([colloc, task.obs_points])

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=float), dtype=dtype, device=device)

    return {
        "colloc": t(colloc), "bc_points": t(bc.points), "bc_values": t(bc.values),
        "pair_a": t(bc.pair_a), "pair_b": t(bc.pair_b),
        "obs_points": t(task.obs_points), "obs_values": t(task.obs_values),
    }
