"""The outer loop: resume equals an uninterrupted run; meta-training beats scratch."""

import numpy as np
import pytest
import torch

from metapinn.config import compose, run_config
from metapinn.evaluate import initialiser, solve_task
from metapinn.meta import method_settings
from metapinn.metatrain import meta_train, val_change_last_quarter
from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.tasks import TaskSettings, generate_tasks, tasks_to_dataset

TS = TaskSettings(n_train=8, n_val=2, n_test=4, n_ood=0, n_obs=100, seed=0)


def _rc(extra=()):
    return run_config(compose(["model.hidden=[20,20,20]", "pde.n_collocation=256",
                               "pde.n_boundary=64", "pde.n_obs=100", "adapt.steps=100",
                               "adapt.log_every=100", "adapt.lr_decay=1.0",
                               "adapt.compile=false", *extra]))


def _setup(tmp_path, extra=()):
    rc = _rc(extra)
    tasks = generate_tasks(rc.pde, TS)
    path = write_netcdf(tasks_to_dataset(rc.pde, tasks, TS), tmp_path / "tasks.nc", title="t")
    return rc, tasks, path


@pytest.fixture(scope="module")
def tasks_file(tmp_path_factory):
    return _setup(tmp_path_factory.mktemp("tasks"))[2]


def test_resume_equals_uninterrupted(tmp_path):
    rc, _, path = _setup(tmp_path, ["model.hidden=[8,8]", "pde.n_collocation=64"])
    ms = method_settings("maml", outer_steps=6, meta_batch=2, inner_steps=2, inner_lr=1e-2,
                         val_every=3, checkpoint_every=2)
    full = meta_train(rc, ms, path, tmp_path / "full")
    meta_train(rc, ms, path, tmp_path / "part", stop_after=4)
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4 and not (tmp_path / "part" / "init.pt").exists()
    resumed = meta_train(rc, ms, path, tmp_path / "part", resume=True)
    a = torch.load(full, weights_only=True)["meta"]
    b = torch.load(resumed, weights_only=True)["meta"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    h_full = read_netcdf(tmp_path / "full" / "history.nc")
    h_res = read_netcdf(tmp_path / "part" / "history.nc")
    np.testing.assert_array_equal(h_full.meta_loss.values, h_res.meta_loss.values)
    assert list(h_full.outer_step.values) == [1, 2, 3, 4, 5, 6]
    assert np.isfinite(h_full.val_loss.values[[2, 5]]).all()
    # validations at steps 3 and 6: none in the third quarter (3, 4.5], so no plateau figure
    assert "val_loss_change_last_quarter" not in h_full.attrs
    # a finished run leaves no checkpoint: init.pt and history.nc hold everything
    assert not (tmp_path / "part" / "checkpoint.pt").exists()


@pytest.mark.parametrize("name", ["reptile", "pretrain"])
def test_a_long_job_runs_compiled_and_trains_as_the_eager_one(tmp_path, monkeypatch, caplog,
                                                              name):
    """End to end through meta_train: a job past the compile threshold (lowered here to 6
    gradient evaluations) says so in its log and, in float64, writes the meta-parameters
    and meta-losses the eager job (adapt.compile=false) writes, to round-off (1e-9)."""
    monkeypatch.setattr("metapinn.meta.base.COMPILE_INNER_FROM", 6)
    small = ["model.hidden=[8,8]", "pde.n_collocation=64", "dtype=float64"]
    _, _, path = _setup(tmp_path, small)
    ms = method_settings(name, outer_steps=3, meta_batch=2, inner_steps=3, inner_lr=1e-2,
                         inner_optimizer="adam", val_every=3)
    out = {}
    for flag in ("false", "true"):
        rc = run_config(compose(["model.hidden=[20,20,20]", "pde.n_collocation=256",
                                 "pde.n_boundary=64", "pde.n_obs=100", *small,
                                 f"adapt.compile={flag}"]))
        caplog.clear()
        with caplog.at_level("INFO", logger="metapinn"):
            init = meta_train(rc, ms, path, tmp_path / flag)
        out[flag] = (torch.load(init, weights_only=True)["meta"],
                     read_netcdf(tmp_path / flag / "history.nc"))
        assert ("graph-free steps run compiled" in caplog.text) == (flag == "true")
        assert "torch.compile failed" not in caplog.text  # compiled, not a silent fallback
    (eager, h_e), (compiled, h_c) = out["false"], out["true"]
    for k in eager:
        assert torch.allclose(compiled[k], eager[k], rtol=1e-9, atol=1e-12), k
    np.testing.assert_allclose(h_c.meta_loss.values, h_e.meta_loss.values, rtol=1e-9)
    assert (h_c.attrs["graph_free_steps_compiled"], h_e.attrs["graph_free_steps_compiled"]) \
        == (1, 0)
    # the validation runs (compiled in the long job) too
    assert np.isfinite(h_c.val_loss.values[-1])
    np.testing.assert_allclose(h_c.val_loss.values, h_e.val_loss.values, rtol=1e-9)


def test_val_change_last_quarter():
    steps = np.arange(1, 101)
    val = np.full(100, np.nan)
    # validations at 20, 50 (second quarter), 60, 70 (third), 80, 90, 100 (last)
    val[[19, 49, 59, 69, 79, 89, 99]] = [4.0, 2.0, 1.2, 0.8, 0.9, 1.1, 0.7]
    assert val_change_last_quarter(steps, val) == pytest.approx(0.9 / 1.0 - 1)
    val[[59, 69]] = np.nan  # none in the third quarter: nothing to compare
    assert val_change_last_quarter(steps, val) is None
    assert val_change_last_quarter(steps, np.full(100, np.nan)) is None


def test_meta_batch_larger_than_the_training_set_is_refused(tmp_path):
    rc, _, path = _setup(tmp_path, ["model.hidden=[8]"])
    with pytest.raises(ValueError, match="meta_batch=9 exceeds the 8 training tasks"):
        meta_train(rc, method_settings("maml", meta_batch=9), path, tmp_path / "x")


@pytest.mark.slow
def test_reptile_beats_scratch_on_held_out_burgers_tasks(tmp_path):
    """After a short meta-training run, 100 Adam steps from the Reptile initialisation
    reach a much lower loss on the held-out test tasks than 100 steps from scratch."""
    torch.set_num_threads(1)
    rc, tasks, path = _setup(tmp_path)
    ms = method_settings("reptile", outer_steps=30, meta_batch=4, inner_steps=20,
                         inner_lr=2e-3, inner_optimizer="adam", outer_lr=1e-2, val_every=10,
                         checkpoint_every=100)
    init = meta_train(rc, ms, path, tmp_path / "reptile")
    test = [t for t in tasks if t.split == "test"]
    # validations at 10, 20 (third quarter) and 30 (last): the plateau figure is their ratio
    hist = read_netcdf(tmp_path / "reptile" / "history.nc")
    v = hist.val_loss.sel(outer_step=[10, 20, 30]).values
    assert np.isfinite(v).all()
    assert hist.attrs["val_loss_change_last_quarter"] == pytest.approx(v[2] / v[1] - 1)

    def final_losses(init_file):
        fn = initialiser(rc, init_file)
        return np.array([solve_task(rc, t, fn).records[-1]["loss"] for t in test])

    scratch, reptile = final_losses(None), final_losses(init)
    assert np.median(reptile) < 0.3 * np.median(scratch), (reptile, scratch)


def test_diverging_inner_loop_stops_with_a_clear_error(tmp_path):
    rc, _, path = _setup(tmp_path, ["model.hidden=[8,8]", "pde.n_collocation=64"])
    ms = method_settings("maml", outer_steps=3, meta_batch=2, inner_steps=3, inner_lr=1e6)
    with pytest.raises(FloatingPointError, match="lower method.inner_lr"):
        meta_train(rc, ms, path, tmp_path / "nan")
    assert not (tmp_path / "nan" / "init.pt").exists()


@pytest.mark.parametrize("change", ["outer_steps", "inner_lr", "fewer_outer_steps", "seed",
                                    "dtype", "hidden"])
def test_case_2_resume_of_other_settings_starts_afresh(tmp_path, caplog, change, tasks_file):
    """Issue 9, case 2: a checkpoint is resumed only by a run of the same settings; a run
    of other settings starts afresh (its result equals an uninterrupted run of the new
    settings) and the log names what differs."""
    small = ["model.hidden=[8,8]", "pde.n_collocation=64"]
    rc, path = _rc(small), tasks_file
    old = dict(outer_steps=6, meta_batch=2, inner_steps=2, inner_lr=1e-2, checkpoint_every=2)
    meta_train(rc, method_settings("maml", **old), path, tmp_path / "run", stop_after=4)
    new, rc_new = dict(old), rc
    if change == "outer_steps":
        new["outer_steps"] = 7
    elif change == "fewer_outer_steps":
        new["outer_steps"] = 3  # the checkpoint is past the new end
    elif change == "inner_lr":
        new["inner_lr"] = 1e-3
    else:
        extra = {"seed": ["seed=1"], "dtype": ["dtype=float64"],
                 "hidden": ["model.hidden=[8,8,8]"]}[change]
        rc_new = _rc([*small, *extra])
    ms_new = method_settings("maml", **new)
    with caplog.at_level("WARNING", logger="metapinn"):
        resumed = meta_train(rc_new, ms_new, path, tmp_path / "run", resume=True)
    assert "written for other settings" in caplog.text
    assert {"outer_steps": "method.outer_steps", "fewer_outer_steps": "method.outer_steps",
            "inner_lr": "method.inner_lr", "seed": "seed", "dtype": "dtype",
            "hidden": "hidden"}[change] in caplog.text
    fresh = meta_train(rc_new, ms_new, path, tmp_path / "fresh")
    a = torch.load(fresh, weights_only=True)["meta"]
    b = torch.load(resumed, weights_only=True)["meta"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist = read_netcdf(tmp_path / "run" / "history.nc")
    assert list(hist.outer_step.values) == list(range(1, new["outer_steps"] + 1))


def test_case_8_an_untrained_init_is_not_written(tmp_path, tasks_file):
    rc, path = _rc(["model.hidden=[8]"]), tasks_file
    with pytest.raises(ValueError, match="method.outer_steps=0"):
        meta_train(rc, method_settings("reptile", outer_steps=0, meta_batch=2), path,
                   tmp_path / "x")
    assert not (tmp_path / "x" / "init.pt").exists()


def test_imaml_checkpoint_of_the_old_lambda_is_not_resumed(tmp_path, caplog, tasks_file):
    """iMAML's λ became relative to pde.loss_scale (method revision 2): a checkpoint
    written under revision 1 has the same settings but another meaning, so a resume starts
    afresh and says why; history.nc keeps the λ actually used."""
    rc = _rc(["model.hidden=[8,8]", "pde.n_collocation=64", "pde.loss_scale=4.0"])
    ms = method_settings("imaml", outer_steps=3, meta_batch=2, inner_steps=3, cg_steps=2,
                         imaml_lambda=0.5, checkpoint_every=1)
    meta_train(rc, ms, tasks_file, tmp_path / "run", stop_after=2)
    ck_path = tmp_path / "run" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=False)
    assert ck["key"]["revision"] == 2
    ck["key"]["revision"] = 1  # as written before the change
    torch.save(ck, ck_path)
    with caplog.at_level("WARNING", logger="metapinn"):
        resumed = meta_train(rc, ms, tasks_file, tmp_path / "run", resume=True)
    assert "written for other settings (revision: 1 → 2)" in caplog.text
    fresh = meta_train(rc, ms, tasks_file, tmp_path / "fresh")
    a = torch.load(fresh, weights_only=True)["meta"]
    b = torch.load(resumed, weights_only=True)["meta"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist = read_netcdf(tmp_path / "run" / "history.nc")
    assert hist.attrs["imaml_lambda_effective"] == pytest.approx(0.5 * 4.0, rel=1e-12)
