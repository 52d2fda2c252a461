"""The Snakemake DAG, end to end on the `tiny` experiment, in a scratch directory."""

import shutil
import subprocess
from pathlib import Path

import pytest

from metapinn.ncio import read_netcdf

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake")
pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")


def _snakemake(workdir, *args):
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_dry_run_job_counts(tmp_path):
    r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", "experiment=quick")
    assert r.returncode == 0, r.stderr
    counts = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and not parts[0].endswith(":"):
            counts[parts[0]] = int(parts[1])
    # 3 families × (7 meta-trained methods + scratch) × 1 seed
    assert counts == {"generate_tasks": 3, "tune_scratch_lr": 3, "meta_train": 21,
                      "adapt": 24, "taylor_check": 3, "convergence_figure": 3, "collect": 1,
                      "tables": 1, "all": 1, "total": 60}


def test_bad_workflow_config_is_named(tmp_path):
    r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", "experiment=nope")
    assert r.returncode != 0
    assert "unknown experiment 'nope'" in r.stdout + r.stderr
    r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", "threads=0")
    assert r.returncode != 0 and "threads" in r.stdout + r.stderr


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path):
    r = _snakemake(tmp_path, "--cores", "2", "--config", "experiment=tiny")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "results" / "tiny"
    methods = ("scratch", "transfer", "pretrain", "maml", "fomaml", "reptile", "leap",
               "hypernet")
    for pde in ("burgers", "cdr", "darcy"):
        for method in methods:
            ds = read_netcdf(out / "adapt" / pde / method / "seed0.nc")
            assert ds.sizes["task"] == 2 and list(ds.split.values) == ["test", "test"]
            assert set(ds.data_vars) >= {"loss", "u_rel_l2", "coef_rel_err", "wall_time"}
            assert ds.attrs["method"] == method and "experiment" in ds.attrs["config"]
            if method != "scratch":
                hist = read_netcdf(out / "meta" / pde / method / "seed0" / "history.nc")
                assert "meta_loss" in hist
        taylor = read_netcdf(out / "taylor" / f"{pde}.nc")
        assert ((taylor.slope.values > 1.7) & (taylor.slope.values < 2.3)).all()
        pdf = (out / "figures" / f"convergence_{pde}.pdf").read_bytes()
        png = (out / "figures" / f"convergence_{pde}.png").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 2000
        assert png.startswith(b"\x89PNG") and len(png) > 2000
        assert (tmp_path / "logs" / "tiny" / "adapt" / pde / "scratch" / "seed0.log").exists()
    tune = read_netcdf(out / "tune" / "burgers.nc")
    assert tune.attrs["best_lr"] in (0.001, 0.01) and tune.u_rel_l2.dims == ("lr", "task")
    assert f"adaptation learning rate {tune.attrs['best_lr']:.3g}" in (
        tmp_path / "logs" / "tiny" / "adapt" / "burgers" / "maml" / "seed0.log").read_text()
    conv = read_netcdf(out / "convergence.nc")
    assert dict(conv.sizes) == {"pde": 3, "method": 8, "seed": 1, "task": 2, "step": 3}
    assert conv.u_rel_l2.dims == ("pde", "method", "seed", "task", "step")
    assert list(conv.split.values) == ["test", "test"]
    table = (out / "tables" / "speedup.csv").read_text().splitlines()
    assert len(table) == 1 + 3 * 8 and table[0].startswith("pde,method,speedup")
    assert (out / "tables" / "speedup.tex").read_text().startswith("\\begin{tabular}")
    # a second run has nothing to do
    r = _snakemake(tmp_path, "-n", "--cores", "2", "--config", "experiment=tiny")
    assert "Nothing to be done" in r.stdout + r.stderr


def test_snakemake_lint_is_clean(tmp_path):
    r = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--lint"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations" in r.stdout + r.stderr


def test_meta_train_asks_for_a_gpu_only_on_cuda(tmp_path):
    def gpu_requests(device):
        r = _snakemake(tmp_path, "-n", "--cores", "1", "--config", "experiment=tiny",
                       f"device={device}")
        assert r.returncode == 0, r.stderr
        found, rule = {}, None
        for line in r.stdout.splitlines():
            if line.startswith("rule ") or line.startswith("localrule "):
                rule = line.split()[1].rstrip(":")
            elif line.strip().startswith("resources:") and rule:
                found[rule] = found.get(rule, False) or "gpu=1" in line
        return found

    assert gpu_requests("cuda")["meta_train"] is True
    assert gpu_requests("cuda")["adapt"] is False
    assert gpu_requests("cpu")["meta_train"] is False
