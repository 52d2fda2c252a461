"""Hydra configuration → frozen settings records, validated before any work starts.

The config tree lives in ``config/`` (groups ``pde/``, ``model/``, ``adapt/``,
``experiment/``); :func:`compose` builds it without Hydra's working-directory change or
``outputs/`` folders, and turns Hydra's errors into messages that name the bad key and the
valid choices. :func:`run_config` then checks every value and returns a :class:`RunConfig`
that the library functions take explicitly (no global state).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .adapt import AdaptSettings
from .loss import LossWeights
from .pdes import FAMILIES, PDEFamily, get_pde
from .tasks import TaskSettings

GROUPS = ("pde", "model", "adapt", "method", "experiment")


class ConfigError(ValueError):
    """A configuration value or override is invalid; the message names it."""


def config_dir() -> Path:
    """The Hydra config folder: ``$METAPINN_CONFIG_DIR``, the packaged copy, or the repo's."""
    env = os.environ.get("METAPINN_CONFIG_DIR")
    if env:
        if not (Path(env) / "config.yaml").is_file():
            raise ConfigError(f"--config-dir / METAPINN_CONFIG_DIR {env!r} has no config.yaml")
        return Path(env).resolve()  # Hydra needs an absolute path
    here = Path(__file__).resolve().parent
    candidates = [here / "_config", here.parents[1] / "config"]
    for c in candidates:
        if (c / "config.yaml").is_file():
            return c
    raise ConfigError(f"no config folder with config.yaml among {[str(c) for c in candidates]}")


def group_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The composed configuration for ``overrides`` (Hydra syntax, e.g. ``pde=cdr``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value")
        if key in GROUPS:
            value = ov.split("=", 1)[1]
            choices = group_choices(key)
            if value not in choices and value != "null":
                raise ConfigError(f"unknown {key} {value!r}; valid choices: {', '.join(choices)}")
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (ConfigCompositionException, MissingConfigException) as e:
        msg = str(e)
        cause = str(e.__cause__) if e.__cause__ else ""
        if "not in struct" in cause or "Could not override" in msg:
            bad = msg.split("'")[1] if "'" in msg else msg
            raise ConfigError(_unknown_key_message(bad)) from None
        raise ConfigError(f"invalid configuration: {msg} {cause}".strip()) from None
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse override: {e}") from None
    cfg = _apply_experiment_overrides(cfg, overrides, "pde", "pde_overrides")
    return _apply_experiment_overrides(cfg, overrides, "method", "method_overrides")


def _apply_experiment_overrides(cfg: DictConfig, overrides, group: str, key: str) -> DictConfig:
    """Merge ``experiment.<key>[<name>]`` into ``cfg.<group>``: an experiment's per-family
    settings (``pde_overrides``, e.g. thresholds) and per-method budgets
    (``method_overrides``). ``<group>.*`` overrides on the command line still win."""
    node = cfg[group]
    extra = (cfg.experiment.get(key) or {}).get(node.name)
    if not extra:
        return cfg
    _check_known(extra, node, f"experiment.{key}.{node.name}")
    cli = [o for o in overrides if o.split("=", 1)[0].startswith(f"{group}.")]
    OmegaConf.set_struct(cfg, False)
    cfg[group] = OmegaConf.merge(node, extra)
    if cli:
        cfg[group] = OmegaConf.merge(cfg[group], OmegaConf.from_dotlist(cli)[group])
    OmegaConf.set_struct(cfg, True)
    return cfg


def _check_known(extra, node, where: str) -> None:
    """Every key of ``extra`` (recursively) must exist in ``node``: a typo in an experiment's
    overrides would otherwise be merged as a new, unused setting."""
    unknown = sorted(set(map(str, extra)) - set(map(str, node)))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; valid keys: "
                          f"{', '.join(sorted(map(str, node)))}")
    for k, v in extra.items():
        if isinstance(node[k], DictConfig) and isinstance(v, dict | DictConfig):
            _check_known(v, node[k], f"{where}.{k}")


def _unknown_key_message(key: str) -> str:
    base = compose_base()
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    valid = sorted(node.keys()) if isinstance(node, DictConfig) else []
    where = f" under {parent!r}" if parent else ""
    return f"unknown setting {key!r}; valid keys{where}: {', '.join(map(str, valid))}"


def compose_base() -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="config")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs, validated. Built by :func:`run_config`."""

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

    @property
    def widths(self) -> tuple[int, ...]:
        return (2, *self.hidden, 1)


def _dtype(name: str) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64}
    if name not in table:
        raise ConfigError(f"unknown dtype {name!r}; valid choices: float32, float64")
    return table[name]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; valid choices: cpu, cuda, auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=cpu or auto")
    return torch.device(name)


def _adapt_items(cfg: DictConfig) -> dict:
    """``adapt`` settings; a family's ``pde.coef_lr_factor`` (if set) replaces the global one
    (it belongs to the family's coefficient parametrisation, not to a method)."""
    items = dict(OmegaConf.to_container(cfg.adapt))
    family = cfg.pde.get("coef_lr_factor")
    if family is not None:
        items["coef_lr_factor"] = float(family)
    return items


def run_config(cfg: DictConfig) -> RunConfig:
    """Validate the composed config and freeze it into a :class:`RunConfig`."""
    p = cfg.pde
    if p.name not in FAMILIES:
        raise ConfigError(f"unknown pde {p.name!r}; valid choices: {', '.join(FAMILIES)}")
    grid = {k: int(v) for k, v in p.get("grid", {}).items()}
    try:
        hidden = tuple(int(h) for h in cfg.model.hidden)
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"model.hidden must be a non-empty list of positive widths, "
                              f"got {list(cfg.model.hidden)}")
        rc = RunConfig(
            pde=get_pde(p.name, **grid),
            tasks=TaskSettings(n_train=int(cfg.tasks.n_train), n_val=int(cfg.tasks.n_val),
                               n_test=int(cfg.tasks.n_test), n_ood=int(cfg.tasks.n_ood),
                               n_obs=int(p.n_obs), noise=float(p.noise),
                               seed=int(cfg.tasks.seed)),
            adapt=AdaptSettings(**_adapt_items(cfg)),
            weights=LossWeights(**OmegaConf.to_container(p.weights)),
            hidden=hidden,
            n_collocation=int(p.n_collocation), n_boundary=int(p.n_boundary),
            threshold_u=float(p.threshold.u_rel_l2),
            threshold_coef=float(p.threshold.coef_rel_err),
            loss_scale=float(p.get("loss_scale", 1.0)),
            seed=int(cfg.seed), dtype=_dtype(cfg.dtype), device=_device(cfg.device),
            threads=int(cfg.threads),
            yaml=OmegaConf.to_yaml(cfg, resolve=True),
        )
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    if rc.n_collocation < 1 or rc.n_boundary < 4:
        raise ConfigError(f"pde.n_collocation must be ≥ 1 and pde.n_boundary ≥ 4, "
                          f"got {rc.n_collocation}, {rc.n_boundary}")
    if rc.loss_scale <= 0:
        raise ConfigError(f"pde.loss_scale must be > 0, got {rc.loss_scale}")
    if rc.seed < 0:
        raise ConfigError(f"seed must be ≥ 0, got {rc.seed}")
    return rc


def meta_settings(cfg: DictConfig):
    """The ``method`` group as a validated :class:`metapinn.meta.MetaSettings`."""
    from .meta import METHODS, MetaSettings

    if cfg.method.name not in METHODS:
        raise ConfigError(f"unknown method {cfg.method.name!r}; valid choices: "
                          f"{', '.join(METHODS)}")
    try:
        return MetaSettings(**OmegaConf.to_container(cfg.method, resolve=True))
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
