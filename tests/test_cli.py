"""The Hydra CLI: clear errors before any work, and the commands' outputs."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import metapinn
from metapinn.cli import main
from metapinn.config import compose, run_config
from metapinn.evaluate import solve_tasks
from metapinn.meta import method_settings
from metapinn.ncio import read_netcdf, write_netcdf

REPO = Path(__file__).resolve().parents[1]

TINY = ["experiment=tiny", "pde.n_collocation=128", "pde.n_boundary=32", "pde.n_obs=64"]


@pytest.mark.parametrize("args,needle", [
    (["solve", "pde=heat"], "unknown pde 'heat'; valid choices: burgers, cdr, darcy"),
    (["solve", "adapt.steps=-3"], "adapt.steps"),
    (["solve", "foo=1"], "unknown setting 'foo'; valid keys: adapt,"),
    (["solve", "adapt.stepz=1"],
     "valid keys under 'adapt': batch, coef_lr_factor, compile, dense_log, eval_stride, "
     "lbfgs_steps"),
    (["solve", "dtype=float16"], "unknown dtype 'float16'"),
    (["solve", "model.hidden=[]"], "model.hidden"),
    (["solve", "seed=-1"], "seed must be ≥ 0"),
    (["solve", "experiment=big"], "unknown experiment 'big'; valid choices:"),
    (["solve", "coefficients={nu:0.02,rho:1}"], "coefficients must set exactly ['nu']"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["solve", "task"], "not of the form key=value"),
    (["config", "--config-dir=/nonexistent"], "'/nonexistent' has no config.yaml"),
    (["solve", "device=tpu"], "unknown device 'tpu'; valid choices: cpu, cuda, auto"),
    (["meta-train", "method=anil"], "unknown method 'anil'; valid choices:"),
    (["meta-train", "method=maml", "method.meta_batch=0"], "method.meta_batch must be ≥ 1"),
    (["meta-train", "method=maml", "method.inner_optimizer=lbfgs"], "inner_optimizer"),
    # bash's expansion of an unquoted coefficients={nu:0.02,rho:1}
    (["solve", "coefficients=nu:0.02", "coefficients=rho:1"],
     "Cannot assign str to Dict[str, float]; write the dict quoted in the shell, e.g. "
     "'coefficients={nu:0.02,rho:1}' (unquoted, bash expands braces with commas"),
])
def test_bad_input_names_the_problem(capsys, args, needle):
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_generate_and_solve_from_file(tmp_path, capsys):
    out = tmp_path / "tasks.nc"
    assert main(["generate-tasks", "pde=burgers", *TINY, f"out={out}"]) == 0
    ds = read_netcdf(out)
    assert ds.sizes["task"] == 6 and ds.attrs["pde"] == "burgers"
    assert "experiment:" in ds.attrs["config"]
    hist = tmp_path / "solve.nc"
    assert main(["solve", "pde=burgers", *TINY, f"tasks_file={out}", "task=3",
                 f"out={hist}"]) == 0
    text = capsys.readouterr().out
    assert "task 3 (test) after 20 steps" in text and "nu: identified" in text
    h = read_netcdf(hist)
    assert h.sizes["step"] == 21 and float(h.true_coef.values[0, 0]) == \
        pytest.approx(float(ds.coefficients.sel(task=3).values[0]))


def test_solve_with_fixed_coefficients_and_a_missing_file(tmp_path, capsys):
    assert main(["solve", "pde=cdr", *TINY, "coefficients={beta:1,nu:0.5,rho:2}"]) == 0
    assert "true 0.5" in capsys.readouterr().out
    assert main(["solve", "pde=cdr", *TINY, f"tasks_file={tmp_path}/none.nc"]) == 2
    assert "no such NetCDF file" in capsys.readouterr().err
    assert main(["solve", *TINY, f"init={tmp_path}/none.pt"]) == 2
    assert "no initialisation file" in capsys.readouterr().err


def test_adapt_tasks_rejects_a_dataset_of_another_family(tmp_path, capsys):
    out = tmp_path / "tasks.nc"
    assert main(["generate-tasks", "pde=burgers", *TINY, f"out={out}"]) == 0
    assert main(["adapt-tasks", "pde=cdr", *TINY, f"tasks_file={out}",
                 f"out={tmp_path}/a.nc"]) == 2
    assert "holds 'burgers' tasks, not 'cdr'" in capsys.readouterr().err
    assert not (tmp_path / "a.nc").exists()


def test_device_auto_and_cuda(capsys):
    import torch

    from metapinn.config import compose, run_config

    rc = run_config(compose(["device=auto"]))
    assert rc.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert main(["solve", "device=cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_experiment_method_overrides_and_command_line_precedence():
    from metapinn.config import compose

    cfg = compose(["experiment=quick", "method=maml"])
    assert cfg.method.inner_steps == 2 and cfg.method.inner_lr == 0.01
    # outer steps from quick's meta-training budget: ⌊2400 / (4 tasks × 3 × 2.25)⌋
    assert cfg.method.outer_steps == 88
    cfg = compose(["experiment=quick", "method=maml", "method.outer_steps=7"])
    assert cfg.method.outer_steps == 7 and cfg.method.inner_steps == 2
    assert compose(["experiment=quick", "method=scratch"]).method.outer_steps == 0


def test_a_relative_config_dir_works(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["config", "--config-dir=config", "pde=cdr"]) == 0
    assert "name: cdr" in capsys.readouterr().out


def test_experiment_pde_overrides_set_per_family_thresholds(tmp_path):
    from metapinn.config import ConfigError, compose, run_config

    exp = tmp_path / "experiment"
    exp.mkdir()
    for f in (REPO / "config").glob("**/*.yaml"):
        dest = tmp_path / f.relative_to(REPO / "config")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f.read_text())
    (exp / "mine.yaml").write_text(
        "# @package _global_\nexperiment:\n  name: mine\n  pdes: [cdr]\n  methods: [scratch]\n"
        "  seeds: [0]\n  splits: [test]\n  lr_grid: [0.01]\n"
        "  pde_overrides:\n    cdr: {threshold: {u_rel_l2: 0.2, coef_rel_err: 0.1}}\n")
    old = os.environ.get("METAPINN_CONFIG_DIR")
    os.environ["METAPINN_CONFIG_DIR"] = str(tmp_path)
    try:
        rc = run_config(compose(["experiment=mine", "pde=cdr"]))
        assert rc.threshold_u == 0.2 and rc.threshold_coef == 0.1
        # unset for burgers: its thresholds come from tune-lr's val runs
        assert run_config(compose(["experiment=mine", "pde=burgers"])).threshold_u is None
        cli = run_config(compose(["experiment=mine", "pde=cdr", "pde.threshold.u_rel_l2=0.3"]))
        assert (cli.threshold_u, cli.threshold_coef) == (0.3, 0.1)  # the command line wins
        (exp / "mine.yaml").write_text((exp / "mine.yaml").read_text().replace(
            "threshold:", "threshhold:"))
        with pytest.raises(ConfigError, match="pde_overrides.cdr: unknown setting.*threshhold"):
            compose(["experiment=mine", "pde=cdr"])
        (exp / "mine.yaml").write_text((exp / "mine.yaml").read_text().replace(
            "threshhold: {u_rel_l2:", "threshold: {u_rel_l2x:"))
        with pytest.raises(ConfigError, match="pde_overrides.cdr.threshold: unknown setting.*"
                                              "u_rel_l2x.*valid keys: coef_rel_err, u_rel_l2"):
            compose(["experiment=mine", "pde=cdr"])
    finally:
        if old is None:
            os.environ.pop("METAPINN_CONFIG_DIR")
        else:
            os.environ["METAPINN_CONFIG_DIR"] = old


def test_tune_lr_picks_the_best_scratch_rate_and_adapt_uses_it(tmp_path, capsys):
    tasks, tune = tmp_path / "tasks.nc", tmp_path / "tune.nc"
    assert main(["generate-tasks", "pde=burgers", *TINY, f"out={tasks}"]) == 0
    # a rate of 1e-7 cannot move the network in 20 steps: 0.01 beats it, and the grid grows
    # upwards (0.02, 0.04, …) while its largest rate is the best
    assert main(["tune-lr", "pde=burgers", *TINY, f"tasks_file={tasks}", f"out={tune}",
                 "experiment.lr_grid=[1e-7,0.01]"]) == 0
    ds = read_netcdf(tune)
    assert ds.attrs["best_lr"] >= 0.01 and ds.sizes["task"] == 1  # the one val task
    assert ds.u_rel_l2.sel(lr=0.01).item() < ds.u_rel_l2.sel(lr=1e-7).item()
    assert ds.attrs["best_lr"] < ds.lr.values.max() or ds.attrs["grid_capped"] == 1
    assert "best scratch learning rate" in capsys.readouterr().out
    assert main(["adapt-tasks", "pde=cdr", *TINY, f"tasks_file={tasks}", f"lr_file={tune}",
                 f"out={tmp_path}/a.nc"]) == 2
    assert "tunes 'burgers', not 'cdr'" in capsys.readouterr().err


def test_family_coefficient_learning_rate_factor():
    from metapinn.config import compose, run_config

    assert run_config(compose(["pde=cdr"])).adapt.coef_lr_factor == 1.0
    assert run_config(compose(["pde=darcy"])).adapt.coef_lr_factor == 10.0
    assert run_config(compose(["pde=burgers", "adapt.coef_lr_factor=3"])).adapt.coef_lr_factor == 3
    assert run_config(compose(["pde=cdr", "pde.coef_lr_factor=5"])).adapt.coef_lr_factor == 5


def _adaptation_file(path: Path, method: str) -> Path:
    """A synthetic ``adapt-tasks`` output: 2 burgers tasks, 3 logged steps."""
    attrs = {"long_name": "x", "units": "1"}
    curve = np.array([[1.0, 0.1, 0.01], [1.0, 0.2, 0.02]])
    ds = xr.Dataset(
        {"loss": (("task", "step"), curve, attrs), "u_rel_l2": (("task", "step"), curve, attrs),
         "wall_time": (("task", "step"), np.tile([0.0, 0.1, 0.2], (2, 1)), attrs),
         "coef_rel_err": (("task", "step", "coef_err"), curve[..., None], attrs)},
        coords={"task": [3, 4], "step": [0, 10, 20], "coef_err": ["nu"],
                "split": ("task", ["test", "test"])},
        attrs={"pde": "burgers", "method": method, "seed": 0, "threshold_u_rel_l2": 0.05,
               "threshold_coef_rel_err": 0.05})
    return write_netcdf(ds, path, title="adaptation")


def test_help_and_the_light_commands_import_neither_torch_hydra_nor_matplotlib(tmp_path):
    """`metapinn --help`, `--version`, `collect` and `tables` start without the heavy
    libraries (each a fresh interpreter: this process has imported them all)."""
    inputs = [str(_adaptation_file(tmp_path / f"{m}.nc", m)) for m in ("scratch", "maml")]
    conv = str(tmp_path / "convergence.nc")
    tables = [f"--{ext}={tmp_path / ('speedup.' + ext)}" for ext in ("csv", "md", "tex")]
    for argv in (["--help"], ["--version"], ["solve", "--help"], ["meta-train", "-h"],
                 ["collect", "--out", conv, *inputs], ["tables", "--convergence", conv, *tables]):
        code = ("import sys, metapinn.cli\n"
                f"assert metapinn.cli.main({argv!r}) == 0\n"
                "print('HEAVY', [m for m in ('torch', 'hydra', 'omegaconf', 'matplotlib')"
                " if m in sys.modules])")
        env = {**os.environ, "PYTHONPATH": str(Path(metapinn.__file__).parents[1])}
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, cwd=tmp_path, check=False)
        assert run.returncode == 0, run.stderr
        assert "HEAVY []" in run.stdout, (argv, run.stdout)
    assert (tmp_path / "speedup.md").read_text().count("| burgers | test |") == 2


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to bound")
def test_threads_bounds_every_thread_pool_of_a_command():
    """A command run with threads=1 runs with torch and every BLAS/OpenMP pool at one
    thread, SciPy's BLAS imported inside it included; afterwards the pools, torch and the
    environment are as before (a fresh interpreter, so that this one keeps its pools).
    An OpenBLAS left at a thread per core busy-waits after each call."""
    code = """
import json, os
import numpy, torch
from threadpoolctl import threadpool_info
import metapinn.cli as cli

def pools():
    return sorted({p["num_threads"] for p in threadpool_info()})

seen = {"before": pools(), "torch_before": torch.get_num_threads()}

def probe(cfg, rc):
    import scipy.linalg  # noqa: F401  (its BLAS may be loaded only now)
    seen.update(inside=pools(), torch_inside=torch.get_num_threads(),
                env=os.environ.get("OPENBLAS_NUM_THREADS"),
                apis=sorted({p["user_api"] for p in threadpool_info()}))

cli.COMMANDS["config"] = probe
seen["code"] = cli.main(["config", "threads=1"])
numpy_pool = [p for p in threadpool_info() if "numpy" in p["filepath"]]
seen.update(after=max(p["num_threads"] for p in numpy_pool) if numpy_pool else None,
            torch_after=torch.get_num_threads(), env_after=os.environ.get("OPENBLAS_NUM_THREADS"))
print("SEEN", json.dumps(seen))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(metapinn.__file__).parents[1])}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=False)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.split("SEEN ", 1)[1])
    assert seen["code"] == 0
    assert max(seen["before"]) > 1 and seen["torch_before"] > 1  # the libraries' defaults
    assert "blas" in seen["apis"]
    assert seen["inside"] == [1] and seen["torch_inside"] == 1 and seen["env"] == "1"
    assert seen["torch_after"] == seen["torch_before"] and seen["env_after"] is None
    if seen["after"] is not None:  # NumPy's own BLAS pool, restored
        assert seen["after"] == max(seen["before"])


def test_scratch_lbfgs_adapts_with_adam_then_lbfgs(tmp_path):
    """scratch_lbfgs: scratch's initialisation, half of the steps Adam and half L-BFGS
    (the same step grid as scratch); its Adam half is scratch's 10-step Adam run."""
    tasks = tmp_path / "tasks.nc"
    assert main(["generate-tasks", "pde=burgers", *TINY, f"out={tasks}"]) == 0
    assert main(["meta-train", "pde=burgers", *TINY, "method=scratch_lbfgs",
                 f"tasks_file={tasks}", f"out_dir={tmp_path}"]) == 0
    runs = {}
    for name, args in (("scratch", []), ("scratch10", ["adapt.steps=10"]),
                       ("scratch_lbfgs", ["method=scratch_lbfgs", f"init={tmp_path}/init.pt"])):
        out = tmp_path / f"{name}.nc"
        assert main(["adapt-tasks", "pde=burgers", *TINY, *args, f"tasks_file={tasks}",
                     "pde.threshold.u_rel_l2=0.5", "pde.threshold.coef_rel_err=0.5",
                     f"out={out}"]) == 0
        runs[name] = read_netcdf(out)
    a, b = runs["scratch"], runs["scratch_lbfgs"]
    assert (a.attrs["adam_steps"], a.attrs["lbfgs_steps"]) == (20, 0)
    assert (b.attrs["adam_steps"], b.attrs["lbfgs_steps"]) == (10, 10)
    assert list(a.step.values) == list(b.step.values)
    adam10 = runs["scratch10"]
    np.testing.assert_allclose(b.loss.sel(step=adam10.step.values).values[:, :-1],
                               adam10.loss.values[:, :-1], rtol=1e-6)
    # then L-BFGS: lower than Adam's 20 steps here
    assert (b.loss.values[:, -1] < a.loss.values[:, -1]).all()
    # the Python API runs the method's loop too, by name (default settings) or settings
    cfg = compose(["pde=burgers", *TINY, "pde.threshold.u_rel_l2=0.5",
                   "pde.threshold.coef_rel_err=0.5"])
    rc, splits = run_config(cfg), tuple(cfg.experiment.splits)
    for method, steps in (("scratch_lbfgs", (10, 10)),
                          (method_settings("scratch_lbfgs", lbfgs_fraction=0.25), (15, 5))):
        out = solve_tasks(rc, tasks, method, tmp_path / "api.nc", init=tmp_path / "init.pt",
                          splits=splits)
        c = read_netcdf(out)
        assert (c.attrs["method"], c.attrs["adam_steps"], c.attrs["lbfgs_steps"]) == \
            ("scratch_lbfgs", *steps)
        if steps == (10, 10):  # the default settings: the CLI's run
            np.testing.assert_allclose(c.loss.values, b.loss.values, rtol=1e-6)


def _keys_read_by(command: str) -> list[str]:
    """The command-level keys of ``Config`` that ``command``'s code reads, derived from the
    source of metapinn/cli.py: every ``cfg.<key>`` in the command's function and in the
    functions of that module it calls; the nodes ``identify`` and ``classical`` where they
    are read (``node.*``); ``method`` where the method's settings are (``method_config``)."""
    import ast
    import dataclasses

    import metapinn.cli as cli
    from metapinn.settings import Config

    fields = [(f.name, str(f.type)) for f in dataclasses.fields(Config)]
    node_types = ("Settings", "TaskSplits", "Any")
    scalars = [k for k, ann in fields if not any(t in ann for t in node_types)]
    nodes = [k for k, ann in fields if any(t in ann for t in node_types)
             and k not in ("pde", "model", "adapt", "method", "experiment", "tasks")]
    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    found: set[str] = set()
    seen: set[str] = set()
    todo = [cli.COMMANDS[command].__name__]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Attribute):
                base = node.value.id if isinstance(node.value, ast.Name) else None
                if base == "cfg" and node.attr in scalars or \
                        node.attr in nodes and base != "rc":
                    found.add(node.attr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "method_config":
                    found.add("method")
                todo.append(node.func.id)
    order = [k for k, _ in fields]
    return [f"{k}.*" if k in nodes else k for k in sorted(found, key=order.index)]


def test_command_help_lists_the_keys_the_command_reads(capsys):
    """`metapinn <command> --help` (or -h, or `metapinn help <command>`): the description,
    the command-level keys its code reads (the table HYDRA_HELP, checked here against the
    code), each with its description, and an example; exit 0, before any composition."""
    from metapinn.cli import HYDRA_COMMANDS, HYDRA_HELP

    assert set(HYDRA_HELP) == set(HYDRA_COMMANDS)
    for command, (_, _, keys) in HYDRA_HELP.items():
        assert list(keys) == _keys_read_by(command), command
    assert _keys_read_by("solve") == ["task", "coefficients", "tasks_file", "init", "out",
                                      "method"]
    assert _keys_read_by("identify") == ["observations", "init", "out", "identify.*", "method"]
    for flag in ("--help", "-h"):
        assert main(["solve", "pde=burgers", flag]) == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: metapinn solve [--config-dir=DIR] [key=value ...]")
        assert "solve one task from method=...'s initialisation" in text
        keys = text.split("keys of this command:\n", 1)[1].split("\nand, as every", 1)[0]
        assert [line.split()[0] for line in keys.splitlines() if line[2] != " "] == \
            list(HYDRA_HELP["solve"][2])
        assert "  init          an init.pt written by meta-train" in keys
        assert "example:\n  metapinn solve pde=burgers task=3 'coefficients={nu:0.02}'" in text
    for command, (_, example, keys) in HYDRA_HELP.items():
        assert main(["help", command]) == 0
        text = capsys.readouterr().out
        assert example in text
        for key in keys:  # every key listed has a description
            assert re.search(rf"^  {re.escape(key)} +\S", text, re.M), (command, key)
    assert main(["solve", "--help", "pde=heat"]) == 0  # help before any composition
    capsys.readouterr()
    # where a key means something particular for the command, its help says so
    assert main(["identify", "--help"]) == 0
    assert "the runs themselves follow identify.*" in " ".join(capsys.readouterr().out.split())
    assert main(["solve", "-h"]) == 0
    assert "unset: the task is drawn from the seed" in " ".join(capsys.readouterr().out.split())
    for argv in (["help", "help"], ["help", "-h"]):
        assert main(argv) == 0
        assert capsys.readouterr().out.startswith("metapinn ")  # the usage


def test_collect_records_its_inputs_as_its_config(tmp_path):
    """convergence.nc's config attribute: YAML naming collect's inputs and their digests."""
    import yaml

    inputs = [_adaptation_file(tmp_path / f"{m}.nc", m) for m in ("scratch", "maml")]
    conv = tmp_path / "convergence.nc"
    assert main(["collect", "--out", str(conv), *map(str, inputs)]) == 0
    config = yaml.safe_load(read_netcdf(conv).attrs["config"])
    assert config["command"] == "metapinn collect"
    assert [(i["file"], i["method"], i["seed"]) for i in config["inputs"]] == [
        (str(inputs[0]), "scratch", 0), (str(inputs[1]), "maml", 0)]


def test_solve_adapts_with_the_method_as_adapt_tasks_does(tmp_path, capsys):
    """solve method=scratch_lbfgs: scratch's initialisation from the seed (no init.pt),
    Adam then L-BFGS, the very run adapt-tasks makes of the same task."""
    tasks = tmp_path / "tasks.nc"
    assert main(["generate-tasks", "pde=burgers", *TINY, f"out={tasks}"]) == 0
    assert main(["meta-train", "pde=burgers", *TINY, "method=scratch_lbfgs",
                 f"tasks_file={tasks}", f"out_dir={tmp_path}"]) == 0
    adapt = tmp_path / "adapt.nc"
    assert main(["adapt-tasks", "pde=burgers", *TINY, "method=scratch_lbfgs",
                 f"init={tmp_path}/init.pt", f"tasks_file={tasks}", "pde.threshold.u_rel_l2=0.5",
                 "pde.threshold.coef_rel_err=0.5", f"out={adapt}"]) == 0
    capsys.readouterr()
    reference = read_netcdf(adapt).loss.sel(task=3).values
    for init in ([], [f"init={tmp_path}/init.pt"]):  # from the seed; from its init.pt
        out = tmp_path / "solve.nc"
        assert main(["solve", "pde=burgers", *TINY, "method=scratch_lbfgs", *init,
                     f"tasks_file={tasks}", "task=3", f"out={out}"]) == 0
        assert "after 10 Adam steps + 10 L-BFGS iterations from scratch_lbfgs" in \
            capsys.readouterr().out
        ds = read_netcdf(out)
        assert (ds.attrs["method"], ds.attrs["adam_steps"], ds.attrs["lbfgs_steps"]) == \
            ("scratch_lbfgs", 10, 10)
        np.testing.assert_allclose(ds.loss.values[0], reference, rtol=1e-6)
    # scratch_alt from the seed: the initialisation its meta-train writes, not scratch's
    alt = tmp_path / "alt"
    assert main(["meta-train", "pde=burgers", *TINY, "method=scratch_alt",
                 f"tasks_file={tasks}", f"out_dir={alt}"]) == 0
    losses = {}
    for name, args in (("scratch", []), ("alt", ["method=scratch_alt"]),
                       ("alt.pt", ["method=scratch_alt", f"init={alt}/init.pt"])):
        out = tmp_path / f"{name}.nc"
        assert main(["solve", "pde=burgers", *TINY, *args, f"tasks_file={tasks}", "task=3",
                     f"out={out}"]) == 0
        losses[name] = read_netcdf(out).loss.values[0]
    np.testing.assert_allclose(losses["alt"], losses["alt.pt"], rtol=1e-6)
    assert losses["alt"][0] != losses["scratch"][0]
