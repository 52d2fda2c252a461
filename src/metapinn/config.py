"""Configuration: Hydra composition over typed schemas, validation, and digests.

The config tree lives in ``config/`` (groups ``pde/``, ``model/``, ``adapt/``, ``method/``,
``experiment/``). Every key's type and default is declared once, by the dataclasses of
:mod:`metapinn.settings` (and each method's settings subclass), registered in Hydra's
``ConfigStore`` as the schema: a YAML file only overrides, an override of the wrong type
or of an unknown key is refused with a message naming the key, and ``+key=`` cannot add
keys outside the schema.

:func:`compose` builds the configuration without Hydra's working-directory change or
``outputs/`` folders, then merges the experiment's per-family and per-method settings
(``experiment.pde_overrides``, ``experiment.method_overrides``); overrides given on the
command line still win. :func:`run_config` turns it into the :class:`RunConfig` that the
library functions take explicitly, and :func:`digest` fingerprints the settings that decide
one command's results (the pipeline's rerun trigger and the meta-training checkpoint's key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from .errors import ConfigError
from .meta import METHODS, settings_class
from .pdes import FAMILIES, get_pde
from .settings import Config, IdentifySettings, PDESettings

if TYPE_CHECKING:
    import torch

    from .runconfig import RunConfig

GROUPS = ("pde", "model", "adapt", "method", "experiment")

# The settings that decide each command's results (dotted keys of the configuration), and
# those inside them that do not: the digest of a command covers exactly these.
DIGEST_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "generate-tasks": (("pde.name", "pde.grid", "pde.n_obs", "pde.noise", "tasks"), ()),
    "tune-lr": (("pde", "model", "adapt", "tasks", "seed", "dtype", "device",
                 "experiment.lr_grid"), ("pde.threshold",)),
    # a method's own-rate tune: its settings decide the adaptation too (scratch_lbfgs)
    "tune-method-lr": (("pde", "model", "adapt", "method", "tasks", "seed", "dtype", "device",
                        "experiment.lr_grid"), ("pde.threshold",)),
    "meta-train": (("pde", "model", "adapt", "method", "tasks", "seed", "dtype", "device"),
                   ("pde.threshold",)),
    "adapt-tasks": (("pde", "model", "adapt", "method", "tasks", "seed", "dtype", "device",
                     "experiment.splits"), ()),
    "taylor-check": (("pde", "model", "tasks", "seed", "dtype", "device"), ("pde.threshold",)),
}


def config_dir(path: str | os.PathLike | None = None) -> Path:
    """The Hydra config folder: ``path``, ``$METAPINN_CONFIG_DIR``, the packaged copy, or
    the repository's ``config/``."""
    given = path or os.environ.get("METAPINN_CONFIG_DIR")
    if given:
        if not (Path(given) / "config.yaml").is_file():
            raise ConfigError(f"--config-dir / METAPINN_CONFIG_DIR {str(given)!r} has no "
                              f"config.yaml")
        return Path(given).resolve()  # Hydra needs an absolute path
    here = Path(__file__).resolve().parent
    candidates = [here / "_config", here.parents[1] / "config"]
    for c in candidates:
        if (c / "config.yaml").is_file():
            return c
    raise ConfigError(f"no config folder with config.yaml among {[str(c) for c in candidates]}")


def group_choices(group: str, directory: Path) -> list[str]:
    return sorted(p.stem for p in (directory / group).glob("*.yaml"))


def _writable(node) -> None:
    """Clear the read-only flag that frozen dataclasses put on every node, and let free
    ``dict[str, X]`` nodes (``coefficients``, ``pde.grid``, ...) take new keys; values stay
    type-checked."""
    node._set_flag("readonly", None)
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig):
                _writable(child)
                if isinstance(child, DictConfig) and not OmegaConf.is_missing(node, key) \
                        and OmegaConf.get_type(child) is dict:
                    child._set_flag("struct", False)
            else:
                child._set_flag("readonly", None)


def _schema(obj) -> DictConfig:
    node = OmegaConf.structured(obj)
    _writable(node)
    return node


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore: ``base_config`` (the whole tree, typed by
    :class:`metapinn.settings.Config`) and ``method/base_<name>`` for every method."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=_schema(Config))
    for name in METHODS:
        cs.store(group="method", name=f"base_{name}",
                 node=_schema(settings_class(name)(name=name)))


def compose(overrides: list[str] | tuple[str, ...] = (),
            directory: str | os.PathLike | None = None) -> DictConfig:
    """The composed configuration for ``overrides`` (Hydra syntax, e.g. ``pde=cdr``).

    Args:
        overrides: ``key=value`` strings; a group's name selects a file of that group.
        directory: the config folder (default: :func:`config_dir`).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, an unknown group choice;
            the message names the key and the valid choices.
    """
    directory = config_dir(directory)
    overrides = list(overrides)
    parsed = _parse(overrides, directory)
    register_schemas()
    try:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_explain(e, parsed, directory)) from None
    for group, key in (("pde", "pde_overrides"), ("method", "method_overrides")):
        _merge_experiment(cfg, group, key, parsed)
    _check_budget_overrides(cfg)
    _apply_budget(cfg, parsed)
    return cfg


def _check_budget_overrides(cfg: DictConfig) -> None:
    """Refuse ``outer_steps`` in ``experiment.method_overrides`` for a method whose outer
    steps ``experiment.meta_budget`` sets (:func:`_apply_budget`): the key would have no
    effect. (``method.outer_steps=`` on the command line still wins over the budget.)"""
    exp = cfg.experiment
    if exp.meta_budget is None:
        return
    dead = [str(m) for m, extra in exp.method_overrides.items()
            if extra and "outer_steps" in extra
            and settings_class(str(m))(name=str(m)).gradient_evals_per_task(1.0) is not None]
    if dead:
        raise ConfigError(f"outer_steps of {', '.join(dead)} in experiment.method_overrides "
                          f"has no effect: experiment.meta_budget={exp.meta_budget} sets it; "
                          f"remove one (method.outer_steps=N on the command line still "
                          f"overrides the budget)")


def _apply_budget(cfg: DictConfig, parsed) -> None:
    """``experiment.meta_budget`` × ``budget_scale`` gradient evaluations → the method's
    ``outer_steps`` (``MethodSettings.for_budget``), written into the composed configuration
    so that digests, checkpoints and the saved config all show what runs. An
    ``outer_steps`` (or ``transfer_steps``) given on the command line wins."""
    exp = cfg.experiment
    if exp.meta_budget is None or OmegaConf.is_missing(cfg.method, "name"):
        return
    if cfg.budget_scale <= 0:
        raise ConfigError(f"budget_scale must be > 0, got {cfg.budget_scale}")
    given = {ov.key_or_group for ov in parsed if ov.type == OverrideType.CHANGE}
    try:
        ms = settings_class(cfg.method.name)(**OmegaConf.to_container(cfg.method,
                                                                     resolve=True))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"method {cfg.method.name}: {str(e).splitlines()[0]}") from None
    new = ms.for_budget(float(exp.meta_budget) * float(cfg.budget_scale),
                        float(exp.second_order_cost), int(cfg.adapt.steps))
    for f in dataclasses.fields(new):
        if getattr(new, f.name) != getattr(ms, f.name) and f"method.{f.name}" not in given:
            cfg.method[f.name] = getattr(new, f.name)


def _parse(overrides: list[str], directory: Path):
    """Hydra's parse of ``overrides``, after the checks Hydra's own messages do badly."""
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value")
        key = ov.split("=", 1)[0]
        if key.startswith(("+", "~")):
            raise ConfigError(f"override {ov!r}: adding or deleting keys is not allowed; "
                              f"every setting is declared in the schema (`metapinn config` "
                              f"prints them all): set one with KEY=VALUE")
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"cannot parse override: {e}") from None
    for ov in parsed:
        if ov.key_or_group in GROUPS and ov.type == OverrideType.CHANGE:
            choices = group_choices(ov.key_or_group, directory)
            if ov.value() not in choices:
                raise ConfigError(f"unknown {ov.key_or_group} {ov.value()!r}; valid choices: "
                                  f"{', '.join(choices)}")
    return parsed


def _explain(e: Exception, parsed, directory: Path) -> str:
    """One line naming the key and the problem, from a Hydra or OmegaConf error."""
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
    key = getattr(cause, "full_key", None) or ""
    text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    if isinstance(cause, ValidationError) and key:
        return f"invalid value for {key}: {text}{_dict_hint(key, text)}"
    if key and ("not in struct" in str(cause) or "not in '" in str(cause)):
        return _unknown_key_message(key, parsed, directory)
    return f"invalid configuration: {str(e).splitlines()[0]} {text if cause is not e else ''}"\
        .strip()


def _dict_hint(key: str, text: str) -> str:
    """For a dict-valued key given a plain value, how to write a dict: bash expands the
    unquoted ``coefficients={nu:0.02,rho:1}`` into ``coefficients=nu:0.02 coefficients=rho:1``,
    two plain values."""
    if not re.match(r"Cannot assign \w+ to Dict\[", text):
        return ""
    example = "coefficients={nu:0.02,rho:1}" if key == "coefficients" else \
        f"{key}={{name:value,...}}"
    return (f"; write the dict quoted in the shell, e.g. '{example}' (unquoted, bash "
            f"expands braces with commas into separate words)")


def _unknown_key_message(key: str, parsed, directory: Path) -> str:
    """``unknown setting 'a.b'; valid keys under 'a': ...`` for the configuration that the
    given group choices compose."""
    choices = [f"{o.key_or_group}={o.value()}" for o in parsed
               if o.key_or_group in GROUPS and o.type == OverrideType.CHANGE]
    register_schemas()
    with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
        base = hydra_compose(config_name="config", overrides=choices)
    parent, _, _ = key.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    valid = sorted(map(str, node.keys())) if isinstance(node, DictConfig) else []
    where = f" under {parent!r}" if parent else ""
    return f"unknown setting {key!r}; valid keys{where}: {', '.join(valid)}"


def _merge_experiment(cfg: DictConfig, group: str, key: str, parsed) -> None:
    """Merge ``experiment.<key>[<name>]`` into ``cfg.<group>`` (an experiment's settings for
    one family or one method), then re-apply the command line's ``<group>.*`` overrides,
    which win."""
    table = cfg.experiment[key]
    known = FAMILIES if group == "pde" else METHODS
    unknown = sorted(set(map(str, table)) - set(known))
    if unknown:
        raise ConfigError(f"experiment.{key}: unknown {group}(s) {unknown}; valid choices: "
                          f"{', '.join(known)}")
    extra = table.get(cfg[group].name)
    if not extra:
        return
    where = f"experiment.{key}.{cfg[group].name}"
    try:
        cfg[group] = OmegaConf.merge(cfg[group], extra)
    except OmegaConfBaseException as e:
        k = getattr(e, "full_key", "") or ""
        leaf = k.split(".", 1)[1] if k.startswith(f"{group}.") else k
        text = str(e).splitlines()[0]
        if "not in struct" in str(e) or "not in '" in str(e):
            parent, _, name = leaf.rpartition(".")
            node = OmegaConf.select(cfg[group], parent) if parent else cfg[group]
            valid = sorted(map(str, node.keys())) if isinstance(node, DictConfig) else []
            raise ConfigError(f"{where}{'.' + parent if parent else ''}: unknown setting "
                              f"{name!r}; valid keys: {', '.join(valid)}") from None
        raise ConfigError(f"{where}: invalid value for {leaf}: {text}") from None
    for ov in parsed:
        if ov.key_or_group.startswith(f"{group}.") and ov.type == OverrideType.CHANGE:
            OmegaConf.update(cfg, ov.key_or_group, ov.value(), merge=True)


def _dtype(name: str) -> torch.dtype:
    import torch

    table = {"float32": torch.float32, "float64": torch.float64}
    if name not in table:
        raise ConfigError(f"unknown dtype {name!r}; valid choices: float32, float64")
    return table[name]


def identify_run_config(rc: RunConfig, runs: IdentifySettings) -> RunConfig:
    """``rc`` with the Adam steps, L-BFGS iterations and dtype of ``identify``."""
    return replace(rc, adapt=replace(rc.adapt, steps=runs.steps, lbfgs_steps=runs.lbfgs_steps),
                   dtype=_dtype(runs.dtype))


def _device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; valid choices: cpu, cuda, auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=cpu or auto")
    return torch.device(name)


def settings(cfg: DictConfig) -> Config:
    """The composed configuration as typed records (every ``__post_init__`` check run)."""
    try:
        return OmegaConf.to_object(cfg)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e, [], config_dir())) from None


def _check_experiment(cfg: Config) -> None:
    exp = cfg.experiment
    for what, names, known in (("pdes", exp.pdes, FAMILIES), ("methods", exp.methods, METHODS)):
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise ConfigError(f"experiment.{what} {list(names)}: unknown {unknown}; valid "
                              f"choices: {', '.join(known)}")
    for what, names in (("budget_methods", exp.budget_methods),
                        ("own_lr_methods", exp.own_lr_methods or [])):
        unknown = [n for n in names if n not in METHODS or n == "scratch"]
        if unknown:  # (a method not in experiment.methods is left out of the pipeline)
            raise ConfigError(f"experiment.{what}: {unknown} not among the methods other "
                              f"than scratch; valid choices: "
                              f"{', '.join(m for m in METHODS if m != 'scratch')}")


def family(p: PDESettings):
    """The PDE family object of the ``pde`` settings (its grid checked)."""
    if p.name not in FAMILIES:
        raise ConfigError(f"unknown pde {p.name!r}; valid choices: {', '.join(FAMILIES)}")
    try:
        return get_pde(p.name, **p.grid)
    except TypeError as e:
        raise ConfigError(f"pde.grid {dict(p.grid)} does not fit {p.name}: {e}") from None


def run_config(cfg: DictConfig, command: str | None = None) -> RunConfig:
    """Validate the composed config and freeze it into a :class:`RunConfig` (with the
    :func:`digest` of ``command``'s settings, if given)."""
    from .runconfig import RunConfig  # torch: only where a run is set up, not to read a config
    from .tasks import TaskSettings

    s = settings(cfg)
    _check_experiment(s)
    p, t = s.pde, s.tasks
    pde = family(p)
    n_nodes = len(pde.grid_points())
    if p.n_obs > n_nodes:
        raise ConfigError(f"pde.n_obs={p.n_obs} exceeds the {n_nodes} nodes of the {p.name} "
                          f"reference grid")
    adapt = s.adapt
    if p.coef_lr_factor is not None:  # the family's coefficient parametrisation decides
        adapt = replace(adapt, coef_lr_factor=p.coef_lr_factor)
    try:
        tasks = TaskSettings(**dataclasses.asdict(t), n_obs=p.n_obs, noise=p.noise)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for key in ("seed", "task", "threads"):
        if getattr(s, key) < 0:
            raise ConfigError(f"{key} must be ≥ 0, got {getattr(s, key)}")
    return RunConfig(
        pde=pde, tasks=tasks, adapt=adapt, weights=p.weights, hidden=tuple(s.model.hidden),
        n_collocation=p.n_collocation, n_boundary=p.n_boundary,
        threshold_u=p.threshold.u_rel_l2, threshold_coef=p.threshold.coef_rel_err,
        loss_scale=p.loss_scale, seed=s.seed, dtype=_dtype(s.dtype), device=_device(s.device),
        threads=s.threads, yaml=OmegaConf.to_yaml(cfg, resolve=True),
        digest=digest(cfg, command) if command else "",
    )


def method_config(cfg: DictConfig):
    """The ``method`` group as its method's validated settings record."""
    return settings(cfg).method


def digest_settings(cfg: DictConfig, command: str) -> dict:
    """The settings that decide ``command``'s results (see ``DIGEST_KEYS``), as plain data."""
    if command not in DIGEST_KEYS:
        raise ValueError(f"no digest for command {command!r}; valid: {', '.join(DIGEST_KEYS)}")
    keys, drop = DIGEST_KEYS[command]
    out = {}
    for key in keys:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
        out[key] = OmegaConf.to_container(value, resolve=True) \
            if isinstance(value, DictConfig | ListConfig) else value
    for key in drop:
        head, _, leaf = key.partition(".")
        if head in out and isinstance(out[head], dict):
            out[head].pop(leaf, None)
    return out


def digest(cfg: DictConfig, command: str) -> str:
    """A short fingerprint of the settings that decide ``command``'s results: equal digests
    mean equal results (on the same machine), whatever else the configuration says."""
    blob = json.dumps(digest_settings(cfg, command), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
