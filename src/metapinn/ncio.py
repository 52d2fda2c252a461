"""Self-describing NetCDF output (docs/design.md §5): CF-style attributes, atomic writes."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr

from . import __version__


def git_revision() -> str:
    """The git revision of the source tree, or ``"unknown"`` outside a checkout."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _check_attrs(obj, where: str):
    for key, value in obj.attrs.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float | np.number
                                                     | np.ndarray):
            raise TypeError(f"{where}: attribute {key!r} must be a string or number, "
                            f"got {type(value).__name__}")


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, *, title: str, config: str = "",
                 history: str = "") -> Path:
    """Write ``ds`` to ``path`` atomically with the global attributes of docs/design.md §5.

    Every data variable must carry ``long_name`` and ``units``. The file is written to a
    temporary name in the same folder and renamed, so an interrupted write never leaves a
    truncated file behind.

    Args:
        ds: the dataset.
        path: destination.
        title: global ``title``.
        config: the resolved configuration as YAML (global ``config``).
        history: what produced it (global ``history``).
    """
    path = Path(path)
    ds = ds.copy()
    for name, var in ds.data_vars.items():
        missing = [a for a in ("long_name", "units") if a not in var.attrs]
        if missing:
            raise ValueError(f"variable {name!r} lacks CF attribute(s) {missing}")
        _check_attrs(var, f"variable {name!r}")
    ds.attrs.update({
        "title": title,
        "history": history or f"written by metapinn {__version__}",
        "source": f"metapinn {__version__} (git {git_revision()})",
        "config": config,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "Conventions": "CF-1.10",
    })
    _check_attrs(ds, "dataset")
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.dtype.kind in "fiu":
            encoding[name] = {"zlib": True, "complevel": 4}
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4",
                                                      encoding=encoding))


def _umask() -> int:
    """The process umask, read without changing it where /proc tells it (thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``:
    an interrupted write never leaves a truncated file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class Kind:
    """One kind of metapinn NetCDF file: what it is, the command that writes it, and what
    a file must hold to be read as one (data variables or coordinates, global attributes,
    dimensions)."""

    what: str
    command: str
    variables: tuple[str, ...] = ()
    attrs: tuple[str, ...] = ()
    dims: tuple[str, ...] = ()

    def missing(self, ds: xr.Dataset) -> list[str]:
        """What ``ds`` lacks to be of this kind (empty: nothing)."""
        return ([f"variable {v}" for v in self.variables if v not in ds.variables]
                + [f"attribute {a}" for a in self.attrs if a not in ds.attrs]
                + [f"dimension {d}" for d in self.dims if d not in ds.dims])


# Every NetCDF file metapinn writes, by kind. Input files are read as their kind
# (read_netcdf(path, kind)), so that a file of another kind is refused with one line
# saying what it is and what was expected, before any work.
KINDS: dict[str, Kind] = {k.command: k for k in (
    Kind("a tasks file", "generate-tasks", ("coefficients", "u_ref", "obs_u", "split"),
         ("pde", "inputs")),
    Kind("a learning-rate tuning file", "tune-lr", ("lr", "u_rel_l2"),
         ("pde", "best_lr")),
    Kind("an adaptation file", "adapt-tasks", ("loss", "u_rel_l2", "wall_time", "coef_rel_err"),
         ("pde", "method", "seed")),
    Kind("a convergence file", "collect",
         ("loss", "u_rel_l2", "wall_time", "coef_rel_err_max", "threshold_u_rel_l2",
          "threshold_coef_rel_err"), dims=("pde", "method", "seed", "task", "step")),
    Kind("a meta-training history (history.nc)", "meta-train",
         ("meta_loss",), ("pde", "method", "total_train_time_s")),
    Kind("a classical-baseline file", "classical",
         ("time_to_threshold", "reached", "n_evals", "final_coef_rel_err"),
         ("pde", "method", "threshold_coef_rel_err")),
    Kind("an observation file", "export-observations", ("u_obs",)),
    Kind("a solve output", "solve", ("loss", "u_rel_l2", "true_coef")),
    Kind("an identify output", "identify", ("coefficients", "coefficients_run")),
    Kind("a Taylor-check file", "taylor-check", ("slope",)),
)}


def _named(kind: Kind) -> str:
    return f"{kind.what} (written by metapinn {kind.command})"


def describe(ds: xr.Dataset) -> str:
    """What kind of file ``ds`` is, for messages: by the command its ``history`` attribute
    names, else by the first kind whose contents it has."""
    words = str(ds.attrs.get("history", "")).split()
    if len(words) > 1 and words[0] == "metapinn" and words[1] in KINDS:
        return _named(KINDS[words[1]])
    for kind in KINDS.values():
        if not kind.missing(ds):
            return kind.what
    names = sorted(map(str, ds.data_vars))
    return (f"a NetCDF file of no metapinn kind (variables: {', '.join(names[:6])}"
            f"{', ...' if len(names) > 6 else ''})" if names else "an empty NetCDF file")


def check_kind(ds: xr.Dataset, kind: str, path: str | os.PathLike) -> xr.Dataset:
    """``ds`` if it holds what a file of ``kind`` (a key of :data:`KINDS`: the command that
    writes it) must hold.

    Raises:
        ValueError: one line naming the file, what it is and what was expected.
    """
    expected = KINDS[kind]
    missing = expected.missing(ds)
    if missing:
        lacks = f"{', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"
        what = describe(ds)
        if what == _named(expected):  # its history says so, its contents do not
            raise ValueError(f"{path} is an incomplete {expected.what.split(' ', 1)[1]} "
                             f"(written by metapinn {expected.command}): it lacks {lacks}")
        raise ValueError(f"{path} is not {_named(expected)} but {what}: it lacks {lacks}")
    return ds


def describe_file(path: str | os.PathLike) -> str:
    """What kind of file the NetCDF file at ``path`` is (:func:`describe`), from its header
    alone (no data is read)."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return describe(ds)
    except (OSError, ValueError, RuntimeError, KeyError):
        return "a NetCDF file"


def is_netcdf(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` starts as a NetCDF file does (classic ``CDF`` or
    NetCDF-4's HDF5 signature)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"CDF") or head == b"\x89HDF"


def read_netcdf(path: str | os.PathLike, kind: str | None = None) -> xr.Dataset:
    """Load a NetCDF file fully into memory (and close it); with ``kind`` (a key of
    :data:`KINDS`), checked to be a file of that kind (:func:`check_kind`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not readable NetCDF (empty, truncated, another format), or
            not of ``kind``; one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such NetCDF file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a NetCDF file")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path} is not a readable NetCDF file ({first})") from None
    return ds if kind is None else check_kind(ds, kind, path)


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Check, before any work, that a file can be written at ``path``: not a folder, and
    its folder exists or can be made and is writable. Returns the path.

    Raises:
        ValueError: naming the path and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: folder {parent} is not writable")
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Like :func:`check_writable` for a folder that will hold outputs."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder")
    check_writable(path / "probe", what)
    return path
