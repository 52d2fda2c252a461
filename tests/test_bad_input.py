"""Issue 9's cases: bad input gives a clear one-line error before any expensive work, and
nothing runs silently to a wrong result (a diverged run is stopped or marked).

Each test's name carries the case number of the issue. Everything runs through the CLI
(:func:`metapinn.cli.main`: the exit code, messages on stderr) on a tiny burgers dataset.
"""

import re

import numpy as np
import pytest
import torch

from metapinn.cli import main
from metapinn.ncio import read_netcdf, write_netcdf

T = ["experiment=tiny", "threads=1", "model.hidden=[8,8]", "pde.n_collocation=64",
     "pde.n_boundary=16", "pde.n_obs=32", "adapt.steps=20", "adapt.log_every=10",
     "tasks.n_train=2", "tasks.n_val=1", "tasks.n_test=2", "tasks.n_ood=0"]
BURGERS = ["pde=burgers", *T]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """A tiny burgers tasks file: train 0, 1; val 2; test 3, 4."""
    out = tmp_path_factory.mktemp("tasks") / "burgers.nc"
    assert main(["generate-tasks", *BURGERS, f"out={out}"]) == 0
    return out


@pytest.fixture(scope="module")
def reptile_init(tmp_path_factory, tasks):
    """An init.pt meta-trained (one outer step) with reptile for model.hidden=[8,8]."""
    out_dir = tmp_path_factory.mktemp("reptile")
    assert main(["meta-train", *BURGERS, f"tasks_file={tasks}", "method=reptile",
                 "method.outer_steps=1", "method.meta_batch=1", f"out_dir={out_dir}"]) == 0
    return out_dir / "init.pt"


@pytest.fixture(scope="module")
def observations(tmp_path_factory, tasks):
    """The observations of burgers test task 3 as an observation file."""
    out = tmp_path_factory.mktemp("obs") / "obs.nc"
    assert main(["export-observations", *BURGERS, f"tasks_file={tasks}", "task=3",
                 f"out={out}"]) == 0
    return out


@pytest.fixture
def no_solve(monkeypatch):
    """Fail the test if any adaptation starts, or meta-training gets to building its tasks."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the expensive work started before the input was refused")

    monkeypatch.setattr("metapinn.evaluate.adapt", forbidden)
    monkeypatch.setattr("metapinn.metatrain.meta_task", forbidden)


def _one_line(err: str) -> str:
    """The error message, checked to be one line without a traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _edited_init(src, dst, edit):
    blob = torch.load(src, weights_only=True)
    edit(blob)
    torch.save(blob, dst)
    return dst


# ----- case 5: divergence stops a single run, and is marked in a batch of runs ------------
@pytest.mark.parametrize("rate", [["adapt.lr=1e30"], ["adapt.optimizer=sgd", "adapt.lr=10"]])
def test_case_5_solve_stops_on_a_diverging_run(tmp_path, capsys, tasks, rate):
    out = tmp_path / "solve.nc"
    assert main(["solve", *BURGERS, f"tasks_file={tasks}", "task=3", *rate,
                 f"out={out}"]) == 3
    msg = _one_line(capsys.readouterr().err)
    assert re.search(r"non-finite by step \d+ of 20 \(adapt.optimizer=\w+, adapt.lr=", msg), msg
    assert not out.exists()


def test_case_5_identify_stops_on_a_diverging_run(tmp_path, capsys, observations):
    out = tmp_path / "id.nc"
    # no L-BFGS phase: the seeds whose saturated network keeps a finite loss would
    # otherwise run it to the end before seed 2 (which diverges at step 1) is reached
    assert main(["identify", *BURGERS, f"observations={observations}", "adapt.lr=1e30",
                 "identify.lbfgs_steps=0", f"out={out}"]) == 3
    msg = _one_line(capsys.readouterr().err)
    assert "non-finite by step" in msg and "adapt.lr" in msg
    assert not out.exists()


def test_case_5_an_init_with_a_nan_weight_is_refused(tmp_path, capsys, reptile_init,
                                                     no_solve):
    def poison(blob):
        blob["meta"]["w1"][0, 0] = float("nan")

    bad = _edited_init(reptile_init, tmp_path / "nan.pt", poison)
    out = tmp_path / "solve.nc"
    assert main(["solve", *BURGERS, "task=3", f"init={bad}", f"out={out}"]) == 2
    msg = _one_line(capsys.readouterr().err)
    assert "non-finite values in ['w1']" in msg and str(bad) in msg
    assert not out.exists()


def test_case_5_adapt_tasks_marks_diverged_tasks_and_goes_on(tmp_path, capsys, tasks):
    ok, bad, one = tmp_path / "ok.nc", tmp_path / "bad.nc", tmp_path / "one.nc"
    assert main(["adapt-tasks", *BURGERS, f"tasks_file={tasks}", f"out={ok}"]) == 0
    ref = read_netcdf(ok)
    assert list(ref.diverged.values) == [0, 0] and ref.attrs["n_diverged"] == 0
    assert np.isfinite(ref.loss.values).all()

    # a diverging rate: every task is marked, the file keeps the full step grid
    assert main(["adapt-tasks", *BURGERS, f"tasks_file={tasks}", "adapt.lr=1e30",
                 f"out={bad}"]) == 0
    ds = read_netcdf(bad)
    assert list(ds.task.values) == [3, 4] and list(ds.diverged.values) == [1, 1]
    assert ds.diverged.dims == ("task",) and ds.attrs["n_diverged"] == 2
    np.testing.assert_array_equal(ds.step.values, ref.step.values)  # [0, 10, 20]
    np.testing.assert_array_equal(ds.loss.sel(step=0).values, ref.loss.sel(step=0).values)
    assert not np.isfinite(ds.loss.sel(step=10).values).any()
    for var in ("loss", "u_rel_l2", "coef_estimate", "coef_rel_err"):
        assert np.isnan(ds[var].sel(step=20).values).all(), var

    # one diverging task (its observations overflow float32) leaves the other untouched
    data = read_netcdf(tasks)
    data["obs_u"].loc[{"task": 3}] = 1e20
    edited = write_netcdf(data, tmp_path / "edited.nc", title="task 3 overflows")
    assert main(["adapt-tasks", *BURGERS, f"tasks_file={edited}", f"out={one}"]) == 0
    ds = read_netcdf(one)
    assert list(ds.diverged.values) == [1, 0] and ds.attrs["n_diverged"] == 1
    assert np.isnan(ds.loss.sel(task=3, step=20).item())
    for var in ("loss", "u_rel_l2", "coef_estimate", "coef_rel_err"):
        np.testing.assert_array_equal(ds[var].sel(task=4).values, ref[var].sel(task=4).values)


def test_case_5_tune_lr_marks_the_diverging_rate(tmp_path, capsys, tasks):
    out = tmp_path / "tune.nc"
    assert main(["tune-lr", *BURGERS, f"tasks_file={tasks}", f"out={out}",
                 "experiment.lr_grid=[1e30,0.01]"]) == 0
    assert "best scratch learning rate 0.01" in capsys.readouterr().out
    ds = read_netcdf(out)
    assert ds.diverged.dims == ("lr", "task")
    assert ds.diverged.sel(lr=1e30).values.tolist() == [1]  # the one val task
    assert ds.diverged.sel(lr=0.01).values.tolist() == [0]
    assert ds.attrs["best_lr"] == 0.01 and ds.attrs["n_diverged"] == 1
    assert np.isnan(ds.u_rel_l2.sel(lr=1e30).values).all()
    assert np.isfinite(ds.u_rel_l2.sel(lr=0.01).values).all()


# ----- case 6: an init.pt of another method ----------------------------------------------
def test_case_6_scratch_refuses_an_init_of_another_method(tmp_path, capsys, tasks,
                                                          reptile_init, no_solve):
    out = tmp_path / "a.nc"
    assert main(["adapt-tasks", *BURGERS, "method=scratch", f"tasks_file={tasks}",
                 f"init={reptile_init}", f"out={out}"]) == 2
    msg = _one_line(capsys.readouterr().err)
    assert "was trained with method 'reptile', not method=scratch" in msg
    assert not out.exists()


# ----- case 7: identifiability and extrapolation warnings --------------------------------
def test_case_7_identify_warns_on_uninformative_data_and_outside_the_prior(
        tmp_path, caplog, observations):
    from metapinn.config import compose, run_config
    from metapinn.identify import identifiability_warnings, prior_warnings

    burgers = run_config(compose(["pde=burgers"])).pde
    cdr = run_config(compose(["pde=cdr"])).pde
    assert prior_warnings(burgers, np.array([0.05])) == []
    (note,) = prior_warnings(burgers, np.array([0.003]))
    assert "nu = 0.003" in note and "outside the family's prior [0.01, 0.1]" in note
    notes = prior_warnings(cdr, np.array([1.0, 3.0, 9.0]))
    assert len(notes) == 2 and notes[0].startswith("nu = 3") and notes[1].startswith("rho = 9")
    pts = np.random.default_rng(0).uniform(0.1, 0.9, (10, 2))
    vals = np.linspace(-1, 1, 10)
    assert identifiability_warnings(cdr, pts, vals) == []
    (note,) = identifiability_warnings(cdr, np.repeat(pts[:1], 10, axis=0), vals)
    assert "only 1 distinct observation point(s) for 3 unknown coefficient(s)" in note
    (note,) = identifiability_warnings(burgers, pts, np.zeros(10))
    assert "every observed u equals 0" in note

    # end to end: all-zero observations
    data = read_netcdf(observations)
    data["u_obs"][:] = 0.0
    zeros = write_netcdf(data, tmp_path / "zeros.nc", title="uninformative")
    out = tmp_path / "id.nc"
    with caplog.at_level("WARNING", logger="metapinn"):
        assert main(["identify", *BURGERS, f"observations={zeros}", "identify.seeds=[0]",
                     "identify.steps=20", "identify.lbfgs_steps=20", f"out={out}"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("identify:" in w and "carry no information" in w for w in warned), warned
    assert "carry no information" in read_netcdf(out).attrs["warnings"]


# ----- case 8: an init.pt that contradicts itself; an untrained meta-training -----------
def test_case_8_inconsistent_init_and_zero_outer_steps_are_refused(
        tmp_path, capsys, tasks, reptile_init, no_solve):
    def widen(blob):
        blob["meta"]["w0"] = torch.zeros(16, 2)

    bad = _edited_init(reptile_init, tmp_path / "wide.pt", widen)
    assert torch.load(bad, weights_only=True)["hidden"] == [8, 8]
    out = tmp_path / "solve.nc"
    assert main(["solve", *BURGERS, "task=3", f"init={bad}", f"out={out}"]) == 2
    msg = _one_line(capsys.readouterr().err)
    assert "do not match the model.hidden=[8, 8]" in msg
    assert "w0 (16, 2) (expected (8, 2))" in msg
    assert not out.exists()

    out_dir = tmp_path / "maml"
    assert main(["meta-train", *BURGERS, f"tasks_file={tasks}", "method=maml",
                 "method.outer_steps=0", f"out_dir={out_dir}"]) == 2
    assert "method.outer_steps" in _one_line(capsys.readouterr().err)
    assert not out_dir.exists()


# ----- case 9: outputs that cannot be written; a dataset of another family --------------
def test_case_9_unwritable_outputs_and_wrong_family_are_refused_before_work(
        tmp_path, capsys, tasks, observations, no_solve):
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder\n")
    runs = [["solve", *BURGERS, f"tasks_file={tasks}", "task=3"],
            ["adapt-tasks", *BURGERS, f"tasks_file={tasks}"],
            ["tune-lr", *BURGERS, f"tasks_file={tasks}"],
            ["identify", *BURGERS, f"observations={observations}"]]
    for args in runs:
        assert main([*args, f"out={folder}"]) == 2, args
        assert f"{folder} is a folder; give a file name" in _one_line(capsys.readouterr().err)
        assert main([*args, f"out={a_file}/sub/x.nc"]) == 2, args
        assert f"{a_file} is a file, not a folder" in _one_line(capsys.readouterr().err)
        assert a_file.read_text() == "not a folder\n"
    assert list(folder.iterdir()) == []

    assert main(["meta-train", *BURGERS, f"tasks_file={tasks}", "method=maml",
                 f"out_dir={a_file}"]) == 2
    assert f"output folder {a_file} is a file, not a folder" in \
        _one_line(capsys.readouterr().err)

    cdr = tmp_path / "cdr.nc"
    data = read_netcdf(tasks)
    data.attrs["pde"] = "cdr"  # the tasks file check reads this attribute
    write_netcdf(data, cdr, title="cdr-labelled tasks")
    assert main(["solve", *BURGERS, f"tasks_file={cdr}", "task=3"]) == 2
    assert f"{cdr} holds 'cdr' tasks, not 'burgers'" in _one_line(capsys.readouterr().err)


# ----- case 10: unreadable files -----------------------------------------------------------
def test_case_10_unreadable_files_give_one_line(tmp_path, capsys, tasks, observations,
                                                reptile_init, no_solve):
    raw = tasks.read_bytes()
    truncated, empty, text = tmp_path / "trunc.nc", tmp_path / "empty.nc", tmp_path / "t.nc"
    truncated.write_bytes(raw[:len(raw) // 2])
    empty.write_bytes(b"")
    text.write_text("x,t,u\n0.1,0.2,0.3\n")
    for f in (truncated, empty, text):
        for args in (["solve", *BURGERS, f"tasks_file={f}", "task=3"],
                     ["adapt-tasks", *BURGERS, f"tasks_file={f}", f"out={tmp_path}/a.nc"],
                     ["meta-train", *BURGERS, f"tasks_file={f}", "method=maml",
                      f"out_dir={tmp_path}/meta"],
                     ["identify", *BURGERS, f"observations={f}"]):
            assert main(args) == 2, args
            msg = _one_line(capsys.readouterr().err)
            assert f"{f} is not a readable NetCDF file" in msg, msg
    assert not (tmp_path / "a.nc").exists() and not (tmp_path / "meta").exists()

    raw = reptile_init.read_bytes()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(raw[:len(raw) // 2])
    for args in (["solve", *BURGERS, "task=3", f"init={bad}"],
                 ["adapt-tasks", *BURGERS, "method=reptile", f"tasks_file={tasks}",
                  f"init={bad}", f"out={tmp_path}/a.nc"]):
        assert main(args) == 2
        msg = _one_line(capsys.readouterr().err)
        assert f"{bad} is not a readable init.pt" in msg
        assert "weights_only" not in msg and "weights only" not in msg.lower()
    assert not (tmp_path / "a.nc").exists()

    out = tmp_path / "convergence.nc"
    assert main(["collect", "--out", str(out), str(tasks)]) == 2
    assert f"{tasks} is not an adaptation file" in _one_line(capsys.readouterr().err)
    assert not out.exists()


# ----- case 11: a checkpoint of other settings --------------------------------------------
def test_case_11_resume_from_a_checkpoint_of_another_width_starts_afresh(tmp_path, caplog,
                                                                        tasks):
    from metapinn.config import compose, method_config, run_config
    from metapinn.metatrain import meta_train

    out_dir = tmp_path / "maml"
    meta = ["method=maml", "method.outer_steps=2", "method.meta_batch=1"]
    cfg = compose([*BURGERS, *meta, "model.hidden=[16,16]"])
    ckpt = meta_train(run_config(cfg, "meta-train"), method_config(cfg), tasks, out_dir,
                      stop_after=1)
    assert ckpt == out_dir / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=False)["meta"]["w0"].shape == (16, 2)

    with caplog.at_level("INFO", logger="metapinn"):
        assert main(["meta-train", *BURGERS, *meta, f"tasks_file={tasks}", "resume=true",
                     f"out_dir={out_dir}"]) == 0
    assert "written for other settings" in caplog.text and "starting afresh" in caplog.text
    assert "hidden: [16, 16] → [8, 8]" in caplog.text
    assert "resuming from" not in caplog.text
    blob = torch.load(out_dir / "init.pt", weights_only=True)
    assert blob["hidden"] == [8, 8] and blob["meta"]["w0"].shape == (8, 2)
    assert list(read_netcdf(out_dir / "history.nc").outer_step.values) == [1, 2]
    assert not ckpt.exists()


# ----- case 12: a file of another kind --------------------------------------------------
@pytest.fixture(scope="module")
def products(tmp_path_factory, tasks):
    """A solve output, an adaptation file and the convergence file collected from it."""
    d = tmp_path_factory.mktemp("products")
    solve, adapt, conv = d / "solve.nc", d / "adapt.nc", d / "convergence.nc"
    assert main(["solve", *BURGERS, f"tasks_file={tasks}", "task=3", f"out={solve}"]) == 0
    assert main(["adapt-tasks", *BURGERS, f"tasks_file={tasks}", "pde.threshold.u_rel_l2=0.5",
                 "pde.threshold.coef_rel_err=0.5", f"out={adapt}"]) == 0
    assert main(["collect", "--out", str(conv), str(adapt)]) == 0
    return {"solve": solve, "adapt": adapt, "convergence": conv}


def test_case_12_a_file_of_another_kind_is_named_before_work(tmp_path, capsys, tasks,
                                                             products, no_solve):
    """lr_file=, tasks_file=, init= and tables --convergence given a metapinn file of
    another kind: one line naming the file, what it is and what was expected."""
    adapt, solve = products["adapt"], products["solve"]
    out = tmp_path / "a.nc"
    tune = "not a learning-rate tuning file (written by metapinn tune-lr)"
    for wrong, what in ((tasks, "a tasks file (written by metapinn generate-tasks)"),
                        (adapt, "an adaptation file (written by metapinn adapt-tasks)")):
        assert main(["adapt-tasks", *BURGERS, f"tasks_file={tasks}", f"lr_file={wrong}",
                     f"out={out}"]) == 2
        msg = _one_line(capsys.readouterr().err)
        assert msg.startswith(f"error: {wrong} is {tune} but {what}: it lacks "), msg
        assert "attribute best_lr" in msg
    assert main(["classical", *BURGERS, f"tasks_file={tasks}", f"threshold_file={adapt}",
                 f"out={out}"]) == 2
    assert f"{adapt} is {tune} but an adaptation file" in _one_line(capsys.readouterr().err)
    assert not out.exists()

    assert main(["solve", *BURGERS, f"tasks_file={solve}", "task=3"]) == 2
    msg = _one_line(capsys.readouterr().err)
    assert msg.startswith(f"error: {solve} is not a tasks file (written by metapinn "
                          f"generate-tasks) but a solve output (written by metapinn solve)")

    tables = [f"--{ext}={tmp_path / ('t.' + ext)}" for ext in ("csv", "md", "tex")]
    assert main(["tables", "--convergence", str(adapt), *tables]) == 2
    msg = _one_line(capsys.readouterr().err)
    assert f"{adapt} is not a convergence file (written by metapinn collect) but an " \
           f"adaptation file (written by metapinn adapt-tasks)" in msg
    assert not (tmp_path / "t.csv").exists()
    # the convergence file itself is read as one
    assert main(["tables", "--convergence", str(products["convergence"]), *tables]) == 0
    capsys.readouterr()

    for netcdf, what in ((tasks, "a tasks file (written by metapinn generate-tasks)"),
                         (solve, "a solve output (written by metapinn solve)")):
        assert main(["solve", *BURGERS, "task=3", f"init={netcdf}"]) == 2
        msg = _one_line(capsys.readouterr().err)
        assert f"{netcdf} is {what}, not an init.pt checkpoint" in msg, msg
        assert "weights_only" not in msg

    # a file of the right kind by its history, but lacking what that kind holds
    broken = tmp_path / "broken.nc"
    write_netcdf(read_netcdf(adapt).drop_vars("u_rel_l2"), broken, title="broken",
                 history="metapinn adapt-tasks")
    assert main(["collect", "--out", str(tmp_path / "c.nc"), str(broken)]) == 2
    msg = _one_line(capsys.readouterr().err)
    assert f"{broken} is an incomplete adaptation file (written by metapinn adapt-tasks): " \
           f"it lacks variable u_rel_l2" in msg, msg


# ----- case 13: resume=true without a checkpoint ----------------------------------------
def test_case_13_resume_without_a_checkpoint_says_it_starts_afresh(tmp_path, caplog, tasks):
    out_dir = tmp_path / "reptile"
    meta = ["method=reptile", "method.outer_steps=1", "method.meta_batch=1",
            f"tasks_file={tasks}", f"out_dir={out_dir}"]
    with caplog.at_level("INFO", logger="metapinn"):
        assert main(["meta-train", *BURGERS, *meta]) == 0
    assert "resume=true" not in caplog.text  # not asked to resume: nothing to say
    caplog.clear()
    with caplog.at_level("INFO", logger="metapinn"):
        assert main(["meta-train", *BURGERS, *meta, "resume=true"]) == 0
    line = [(r.levelname, r.getMessage()) for r in caplog.records
            if "resume=true" in r.getMessage()]
    assert line == [("WARNING", f"resume=true: no checkpoint in {out_dir} (its init.pt, of a "
                                f"finished run, will be overwritten); starting afresh")]
    caplog.clear()
    fresh = tmp_path / "fresh"
    with caplog.at_level("INFO", logger="metapinn"):
        assert main(["meta-train", *BURGERS, *meta[:-1], f"out_dir={fresh}",
                     "resume=true"]) == 0
    # a fresh job (as every pipeline job, which Snakemake runs with resume=true): no warning
    line = [(r.levelname, r.getMessage()) for r in caplog.records
            if "resume=true" in r.getMessage()]
    assert line == [("INFO", f"resume=true: no checkpoint in {fresh}; starting afresh")]
    assert (fresh / "init.pt").exists()


# ----- case 14: solve honours method= ----------------------------------------------------
def test_case_14_solve_needs_the_init_of_a_meta_learned_method(tmp_path, capsys, tasks,
                                                               reptile_init, no_solve):
    out = tmp_path / "solve.nc"
    assert main(["solve", *BURGERS, f"tasks_file={tasks}", "task=3", "method=reptile",
                 f"out={out}"]) == 2
    msg = _one_line(capsys.readouterr().err)
    assert "method=reptile needs init=PATH: the init.pt that metapinn meta-train " \
           "method=reptile writes" in msg
    assert "only scratch, scratch_alt, scratch_lbfgs start without one" in msg
    assert main(["solve", *BURGERS, f"tasks_file={tasks}", "task=3", "method=maml",
                 f"init={reptile_init}", f"out={out}"]) == 2
    assert "was trained with method 'reptile', not method=maml" in \
        _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_case_14_identify_needs_the_init_of_a_meta_learned_method(tmp_path, capsys,
                                                                  observations, reptile_init,
                                                                  no_solve):
    """identify's method=: a meta-learned method without its init.pt, or an init.pt of
    another method, is refused before any run (method= used to be ignored)."""
    out = tmp_path / "identified.nc"
    assert main(["identify", *BURGERS, f"observations={observations}", "method=reptile",
                 f"out={out}"]) == 2
    assert "method=reptile needs init=PATH" in _one_line(capsys.readouterr().err)
    assert main(["identify", *BURGERS, f"observations={observations}", "method=maml",
                 f"init={reptile_init}", f"out={out}"]) == 2
    assert "was trained with method 'reptile', not method=maml" in \
        _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_case_14_solve_from_an_init_takes_its_method(tmp_path, capsys, tasks, reptile_init):
    out = tmp_path / "solve.nc"
    for method in ([], ["method=reptile"]):  # without method=: the file's method
        assert main(["solve", *BURGERS, f"tasks_file={tasks}", "task=3", *method,
                     f"init={reptile_init}", f"out={out}"]) == 0
        assert f"after 20 steps from reptile ({reptile_init})" in capsys.readouterr().out
        ds = read_netcdf(out)
        assert (ds.attrs["method"], ds.attrs["init"]) == ("reptile", str(reptile_init))
