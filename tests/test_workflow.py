"""The Snakemake DAG, end to end on the `tiny` experiment, in a scratch directory."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from metapinn.config import compose
from metapinn.figures import FAMILY_FIGURES
from metapinn.meta import METHODS
from metapinn.ncio import read_netcdf
from metapinn.pdes import FAMILIES

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake")
pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")


def _snakemake(workdir, *args, env=None, snakefile=REPO):
    return subprocess.run([SNAKEMAKE, "-s", str(Path(snakefile) / "Snakefile"), "-d",
                           str(workdir), *args], cwd=workdir, capture_output=True, text=True,
                          timeout=900, check=False, env=env)


def _job_counts(stdout):
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and not parts[0].endswith(":"):
            counts[parts[0]] = int(parts[1])
    return counts


PER_FAMILY = {"generate_tasks": 1, "tune_scratch_lr": 1, "taylor_check": 1, "family_figures": 1,
              "meta_training_figure": 1}
ONCE = {"collect": 1, "speedup_overview": 1, "threshold_sweep": 1, "amortised_cost": 1,
        "tables": 1, "all": 1}


@pytest.mark.parametrize("experiment, seeds", [("quick", 1), ("standard", 3), ("paper", 5)])
def test_dry_run_job_counts(tmp_path, experiment, seeds):
    r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", f"experiment={experiment}")
    assert r.returncode == 0, r.stderr
    # families × (meta-trained methods + scratch) × seeds; quick leaves some methods out
    # (its time), the others run every method
    nf = len(FAMILIES)
    exp = compose([f"experiment={experiment}"]).experiment
    nm = len(exp.methods)
    assert experiment == "quick" or nm == len(METHODS)
    expected = {k: nf * v for k, v in PER_FAMILY.items()} | ONCE
    expected |= {"meta_train": nf * (nm - 1) * seeds, "adapt": nf * nm * seeds,
                 "classical": nf}  # the classical baseline (experiment.classical)
    if experiment == "paper":  # the compute figure: 4 methods at ¼× and 4× the budget
        expected |= {"meta_train_budget": nf * 4 * 2 * seeds,
                     "adapt_budget": nf * 4 * 2 * seeds, "meta_budget": 1}
    # the own-rate table: standard and paper tune and adapt every method but scratch again,
    # quick none
    own = {"quick": 0, "standard": nm - 1, "paper": nm - 1}[experiment]
    assert bool(own) == bool(exp.own_lr)
    if own:
        expected |= {"tune_method_lr": nf * own * seeds, "adapt_own_lr": nf * own * seeds,
                     "collect_own_lr": 1, "tables_own_lr": 1, "speedup_overview_own_lr": 1}
    expected["total"] = sum(expected.values())
    assert _job_counts(r.stdout) == expected


def test_compute_experiment_runs_four_methods_at_three_budgets(tmp_path):
    """`compute`: Reptile, LEAP, MAML and the hypernetwork at ¼×, 1× and 4× the budget; the
    1× runs are the main ones, so only ¼× and 4× add jobs."""
    r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", "experiment=compute")
    assert r.returncode == 0, r.stderr
    counts = _job_counts(r.stdout)
    nf, budgeted = len(FAMILIES), 4
    assert counts["meta_train"] == nf * budgeted  # scratch has no meta-training job
    assert counts["meta_train_budget"] == counts["adapt_budget"] == nf * budgeted * 2
    assert counts["adapt"] == nf * (budgeted + 1) and counts["meta_budget"] == 1
    assert "tune_method_lr" not in counts  # no own-rate table


@pytest.mark.parametrize("visible, limit", [("0,1", 'Resource("gpu", 16)'), ("", None)])
def test_local_gpu_jobs_are_limited_to_the_machines_gpus(tmp_path, visible, limit):
    """profiles/default caps concurrent GPU jobs at 8 per visible GPU (none: no cap)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=visible)
    r = _snakemake(tmp_path, "results/tiny/tasks/burgers.nc", "--cores", "1", "--config",
                   "experiment=tiny", env=env)
    assert r.returncode == 0, r.stderr
    log = r.stdout + r.stderr
    assert re.search(r"Using workflow specific profile \S*profiles/default", log)
    if limit:
        assert f"Provided resources: gpu={limit}" in log
    else:
        assert "Provided resources: gpu" not in log


def test_bad_workflow_config_is_named(tmp_path):
    r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", "experiment=nope")
    assert r.returncode != 0
    assert "unknown experiment 'nope'" in r.stdout + r.stderr
    r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", "threads=0")
    assert r.returncode != 0 and "threads" in r.stdout + r.stderr


def _checkout(dest: Path) -> Path:
    """A copy of the workflow part of this checkout (what a researcher would clone)."""
    for name in ("Snakefile", "workflow", "config", "profiles"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The `tiny` experiment run once, in a copy of the checkout, by `snakemake --cores 2`."""
    wd = _checkout(tmp_path_factory.mktemp("checkout"))
    r = _snakemake(wd, "--cores", "2", "--config", "experiment=tiny", snakefile=wd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wd


def _planned_jobs(wd):
    """``snakemake -n`` in ``wd``: {rule: [wildcards of each job]}."""
    r = _snakemake(wd, "-n", "--cores", "1", "--config", "experiment=tiny", snakefile=wd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jobs, rule = {}, None
    for line in r.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            jobs.setdefault(rule, []).append("")
        elif rule and line.strip().startswith("wildcards:"):
            jobs[rule][-1] = line.split(":", 1)[1].strip()
    return jobs


@pytest.mark.slow
def test_case_1_an_edit_reruns_exactly_the_jobs_it_affects(tiny_run):
    """Issue 9, case 1: a config edit is seen by `snakemake -n` (the jobs' params carry a
    digest of the settings they run with), only where it changes a resolved value."""
    exp = tiny_run / "config" / "experiment" / "tiny.yaml"
    original = exp.read_text()
    try:
        # an edit that changes no resolved value (a comment, a value restated): nothing
        exp.write_text(original.replace("\n    maml: {meta_batch: 2,",
                                        "\n    maml: {meta_batch: 2,  # restated\n        ")
                       .replace("log_every: 10,", "log_every: 10, lr_decay: 0.1,"))
        assert _planned_jobs(tiny_run) == {}
        # one method's inner rate: its meta_train and adapt jobs of every family (at each
        # multiple of the budget), and what reads them; nothing else
        exp.write_text(original.replace("\n    maml: {meta_batch: 2,",
                                        "\n    maml: {inner_lr: 0.003, meta_batch: 2,"))
        jobs = _planned_jobs(tiny_run)
        assert sorted(jobs["meta_train"]) == sorted(jobs["adapt"]) == [
            f"pde={p}, method=maml, seed=0" for p in ("burgers", "cdr", "darcy")]
        assert sorted(jobs["meta_train_budget"]) == sorted(jobs["adapt_budget"]) == [
            f"pde={p}, method=maml, scale=0.5, seed=0" for p in ("burgers", "cdr", "darcy")]
        assert sorted(jobs["tune_method_lr"]) == sorted(jobs["adapt_own_lr"]) == sorted(
            jobs["meta_train"])  # maml is among tiny's own_lr_methods
        per_family = ("meta_train", "adapt", "meta_train_budget", "adapt_budget",
                      "tune_method_lr", "adapt_own_lr")
        assert {r: len(w) for r, w in jobs.items() if r not in per_family} == {
            "collect": 1, "family_figures": 3, "meta_training_figure": 3,
            "speedup_overview": 1, "threshold_sweep": 1, "amortised_cost": 1, "tables": 1,
            "meta_budget": 1, "collect_own_lr": 1, "tables_own_lr": 1,
            "speedup_overview_own_lr": 1, "all": 1}
        # the meta-training budget: every budgeted method's jobs (pretrain's and the
        # conditional PINN's too: 64 evaluations buy them more than the evaluation budget's
        # 20 steps), scratch's, scratch_lbfgs's and transfer's not (transfer trains the
        # evaluation budget's 20 steps either way)
        exp.write_text(original.replace("meta_budget: 32", "meta_budget: 64"))
        jobs = _planned_jobs(tiny_run)
        assert {w.split(", ")[1] for w in jobs["meta_train"]} == {
            f"method={m}" for m in ("pretrain", "conditional", "maml", "fomaml", "metasgd",
                                    "imaml", "reptile", "leap", "hypernet")}
    finally:
        exp.write_text(original)
    # moving the checkout with its results reruns nothing
    moved = tiny_run.parent / "moved"
    shutil.move(tiny_run, moved)
    try:
        assert _planned_jobs(moved) == {}
    finally:
        shutil.move(moved, tiny_run)


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tiny_run):
    tmp_path = tiny_run
    out = tmp_path / "results" / "tiny"
    methods = tuple(METHODS)
    for pde in FAMILIES:
        for method in methods:
            ds = read_netcdf(out / "adapt" / pde / method / "seed0.nc")
            assert list(ds.split.values) == ["test", "test", "ood"]
            assert set(ds.data_vars) >= {"loss", "u_rel_l2", "coef_rel_err", "wall_time",
                                         "diverged"}
            assert ds.attrs["method"] == method and "experiment" in ds.attrs["config"]
            if method != "scratch":
                hist = read_netcdf(out / "meta" / pde / method / "seed0" / "history.nc")
                assert "meta_loss" in hist and hist.attrs["method"] == method
                # a finished meta-training leaves no checkpoint behind
                assert not (out / "meta" / pde / method / "seed0" / "checkpoint.pt").exists()
        taylor = read_netcdf(out / "taylor" / f"{pde}.nc")
        assert ((taylor.slope.values > 1.7) & (taylor.slope.values < 2.3)).all()
        figures = (*FAMILY_FIGURES, "meta_training")
        for name in [f"figures/{pde}/{f}" for f in figures] + [f"taylor/{pde}"]:
            _assert_figure(out / name)
        assert (tmp_path / "logs" / "tiny" / "adapt" / pde / "scratch" / "seed0.log").exists()
        # heavy rules record their time and memory (for sizing cluster jobs)
        bench = tmp_path / "logs" / "tiny" / "benchmark" / "adapt" / pde / "maml" / "seed0.tsv"
        assert "max_rss" in bench.read_text()
    _assert_figure(out / "figures" / "speedup_overview")
    _assert_figure(out / "figures" / "threshold_sweep")
    _assert_figure(out / "figures" / "meta_budget")
    tune = read_netcdf(out / "tune" / "burgers.nc")
    # equal meta-training compute: each budgeted method spent at most the budget (32
    # gradient evaluations, rounded down to whole outer steps); ½× spent about half
    for pde in FAMILIES:
        for method in ("fomaml", "maml", "reptile", "leap", "hypernet"):
            h = read_netcdf(out / "meta" / pde / method / "seed0" / "history.nc").attrs
            per = h["gradient_evals_per_outer_step"]
            assert 32 - per < h["gradient_evals_spent"] <= 32, (pde, method)
        for method in ("reptile", "maml"):
            h = read_netcdf(out / "budget" / "meta" / pde / method / "x0.5" / "seed0" /
                            "history.nc").attrs
            assert h["budget_scale"] == 0.5 and 16 - h["gradient_evals_per_outer_step"] < \
                h["gradient_evals_spent"] <= 16
    # the own-rate table: each method at the rate its own val runs chose, scratch's
    # thresholds, scratch's row the main run's
    own = pd.read_csv(out / "tables" / "speedup_own_lr.csv")
    assert set(map(tuple, own[["pde", "split", "method"]].values)) == {
        (p, s, m) for p in FAMILIES for s in ("test", "ood")
        for m in ("scratch", "maml", "reptile")}  # tiny's experiment.own_lr_methods
    for pde in FAMILIES:
        own_tune = read_netcdf(out / "own_lr" / "tune" / pde / "maml" / "seed0.nc")
        assert own_tune.attrs["method"] == "maml"
        ds = read_netcdf(out / "own_lr" / "adapt" / pde / "maml" / "seed0.nc")
        main = read_netcdf(out / "tune" / f"{pde}.nc")
        assert ds.attrs["threshold_u_rel_l2"] == main.attrs["val_threshold_u_rel_l2"]
        log = (tmp_path / "logs" / "tiny" / "own_lr" / "adapt" / pde / "maml" /
               "seed0.log").read_text()
        assert f"adaptation learning rate {own_tune.attrs['best_lr']:.3g}" in log
    budget = pd.read_csv(out / "tables" / "meta_budget.csv")
    assert set(zip(budget.budget_scale, budget.method, strict=True)) == {
        (s, m) for s in (0.5, 1.0) for m in ("reptile", "maml")}
    # the baselines trained at the tuned rate
    for method in ("transfer", "pretrain"):
        log = (tmp_path / "logs" / "tiny" / "meta_train" / "burgers" / method /
               "seed0.log").read_text()
        assert f"adaptation learning rate {tune.attrs['best_lr']:.3g}" in log
    assert tune.u_rel_l2.dims == ("lr", "task")
    # the grid grew until its best rate was interior (or says it could not)
    assert tune.lr.values.min() < tune.attrs["best_lr"] < tune.lr.values.max() or \
        tune.attrs["grid_capped"] == 1
    assert f"adaptation learning rate {tune.attrs['best_lr']:.3g}" in (
        tmp_path / "logs" / "tiny" / "adapt" / "burgers" / "maml" / "seed0.log").read_text()
    conv = read_netcdf(out / "convergence.nc")
    # every step of the 20 is logged: dense early (every step to 10, then ≤ 10 % apart)
    assert dict(conv.sizes) == {"pde": 3, "method": len(METHODS), "seed": 1, "task": 3,
                                "step": 21}
    # the thresholds come from the val runs of tune-lr, by its rule
    assert float(conv.threshold_u_rel_l2.sel(pde="burgers")) == pytest.approx(
        tune.attrs["val_threshold_u_rel_l2"])
    assert list(conv.method.values) == list(METHODS)  # the registry's order
    assert conv.u_rel_l2.dims == ("pde", "method", "seed", "task", "step")
    assert list(conv.split.values) == ["test", "test", "ood"]
    assert list(conv.step.values) == list(range(21))
    for name in ("u_rel_l2", "coef_rel_err_max", "wall_time", "loss"):
        assert {"long_name", "units"} <= set(conv[name].attrs), name
    assert {"title", "source", "created", "history"} <= set(conv.attrs)
    table = pd.read_csv(out / "tables" / "speedup.csv")
    assert len(table) == 3 * 2 * len(METHODS)  # family × split × method
    assert set(map(tuple, table[["pde", "split", "method"]].values)) == {
        (p, s, m) for p in FAMILIES for s in ("test", "ood") for m in methods}
    # scratch against itself: 1 wherever defined (NaN only where it met them at step 0)
    ref = table[table.method == "scratch"]
    assert ((ref.speedup == 1.0) | (ref.n_at_init == ref.n_runs)).all()
    assert (out / "tables" / "speedup.tex").read_text().startswith("\\begin{tabular}")
    # the HTML report embeds every figure and the table, each with its caption
    report = tmp_path / "report.html"
    r = _snakemake(tmp_path, "--report", str(report), "--config", "experiment=tiny",
                   snakefile=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = report.read_text(errors="replace")
    assert len(html) > 100_000
    for text in ("speedup_overview.png", "steps_to_threshold.png", "meta_training.png",
                 "speedup.csv", "distribution of steps to threshold", "Speedups across"):
        assert text in html, text
    # a second run has nothing to do
    assert _planned_jobs(tmp_path) == {}


def _assert_figure(stem):
    pdf, png = stem.with_suffix(".pdf").read_bytes(), stem.with_suffix(".png").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000, stem
    assert png.startswith(b"\x89PNG") and len(png) > 2000, stem


def test_snakemake_lint_is_clean(tmp_path):
    r = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--lint"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations" in r.stdout + r.stderr


def test_gpu_requests_follow_the_device(tmp_path):
    """With device=cuda the torch-heavy rules (meta_train, tune_scratch_lr, adapt) ask for a
    GPU and run on it; the others stay on the CPU so that a CPU-only node can run them."""
    def jobs(device):
        r = _snakemake(tmp_path, "-n", "-p", "--cores", "1", "--config", "experiment=tiny",
                       f"device={device}")
        assert r.returncode == 0, r.stderr
        found, rule = {}, None
        for line in r.stdout.splitlines():
            if line.startswith("rule ") or line.startswith("localrule "):
                rule = line.split()[1].rstrip(":")
            elif rule and line.strip().startswith("resources:"):
                found.setdefault(rule, set()).add("gpu=1" in line)
            elif rule and "metapinn " in line and "device=" in line:
                found.setdefault(rule, set()).add(f"device={device}" if f"device={device}"
                                                  in line else "device=cpu")
        return found

    cuda = jobs("cuda")
    for rule in ("meta_train", "tune_scratch_lr", "adapt"):
        assert cuda[rule] == {True, "device=cuda"}, rule
    for rule in ("generate_tasks", "taylor_check"):
        assert cuda[rule] == {False, "device=cpu"}, rule
    assert jobs("cpu")["meta_train"] == {False, "device=cpu"}


def test_slurm_profile_limits_every_long_rule(tmp_path):
    """Each rule that asks for a GPU under device=cuda (the long torch jobs: meta-training,
    tuning and adaptation, with their own-rate and compute-figure variants) has its own
    runtime in the SLURM profile, at least the 120 min default; a derived rule such as
    adapt_own_lr is no shorter than the rule it copies."""
    import yaml

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    limits = {rule: res["runtime"] for rule, res in profile["set-resources"].items()
              if "runtime" in res}
    r = _snakemake(tmp_path, "-n", "-p", "--cores", "1", "--config", "experiment=paper",
                   "device=cuda")
    assert r.returncode == 0, r.stderr
    gpu_rules, rule = set(), None
    for line in r.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif rule and line.strip().startswith("resources:") and "gpu=1" in line:
            gpu_rules.add(rule)
    assert {"meta_train", "adapt", "tune_scratch_lr", "adapt_own_lr", "tune_method_lr",
            "meta_train_budget", "adapt_budget"} <= gpu_rules
    assert gpu_rules <= set(limits), gpu_rules - set(limits)
    assert min(limits[r] for r in gpu_rules) >= profile["default-resources"]["runtime"]
    for derived, base in (("adapt_own_lr", "adapt"), ("adapt_budget", "adapt"),
                          ("tune_method_lr", "tune_scratch_lr"),
                          ("meta_train_budget", "meta_train")):
        assert limits[derived] >= limits[base], derived
