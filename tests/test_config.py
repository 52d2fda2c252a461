"""Typed configuration: every key's type and default declared once, overrides checked by type
with messages that name the key, experiment settings merged under the command line, and the
digests that make the pipeline rerun exactly what a change affects. Issue 9's numbered
cases are named in the test ids."""

import dataclasses
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metapinn.cli import main
from metapinn.config import DIGEST_KEYS, compose, digest, run_config, settings
from metapinn.errors import ConfigError
from metapinn.meta import METHODS, method_class
from metapinn.settings import AdaptSettings, MethodSettings, PDESettings

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("overrides,needle", [
    # case 3: YAML booleans are booleans
    pytest.param(["method=maml", "resume=no"], None, id="3-resume-no"),
    # case 11: messages that name the key and the value
    pytest.param(["adapt.steps=abc"], "invalid value for adapt.steps: Value 'abc'", id="11-str"),
    pytest.param(["adapt.steps=1e3"], "invalid value for adapt.steps: Value '1000.0'",
                 id="11-float-for-int"),
    pytest.param(["model.hidden=16"], "invalid value for model.hidden", id="11-hidden-int"),
    pytest.param(["model.hidden=[16.7,3]"], "invalid value for model.hidden[0]: Value '16.7'",
                 id="4-hidden-float"),
    pytest.param(["coefficients={nu:abc}"], "invalid value for coefficients.nu", id="11-coef"),
    pytest.param(["pde.threshold=null"], "invalid value for pde.threshold: field "
                 "'pde.threshold' is not Optional", id="11-threshold-null"),
    pytest.param(["tasks.n_train=0", "tasks.n_val=0", "tasks.n_test=0", "tasks.n_ood=0"],
                 "tasks: every split is empty", id="11-all-splits-0"),
    pytest.param(["pde.n_obs=30000"], "pde.n_obs=30000 exceeds the 25856 nodes", id="11-n_obs"),
    pytest.param(["pde.threshhold.x=1"], "unknown setting 'pde.threshhold'; valid keys under "
                 "'pde': coef_lr_factor, grid,", id="11-typo"),
    pytest.param(["+foo=1"], "adding or deleting keys is not allowed", id="4-plus-key"),
    pytest.param(["~seed"], "not of the form key=value", id="4-delete"),
    pytest.param(["method=leap", "method.leap_norm=maybe"], "invalid value for method.leap_norm",
                 id="11-method-own-bool"),
    pytest.param(["method=maml", "method.leap_norm=true"], "unknown setting 'method.leap_norm'"
                 "; valid keys under 'method': checkpoint_every, first_order,", id="11-other"),
    pytest.param(["pde.grid.nq=3"], "pde.grid {'nx': 256, 'nt': 101, 'nq': 3} does not fit "
                 "burgers", id="11-grid-key"),
    pytest.param(["experiment.splits=[test,tset]"], "experiment.splits ['test', 'tset']",
                 id="11-split"),
])
def test_overrides_are_checked_by_type(overrides, needle):
    if needle is None:
        assert compose(overrides).resume is False
        return
    with pytest.raises(ConfigError) as err:
        run_config(compose(overrides))
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_case_3_no_is_false_everywhere():
    cfg = compose(["adapt.compile=no", "resume=off", "method=leap", "method.leap_norm=0"])
    s = settings(cfg)
    assert s.adapt.compile is False and s.resume is False and s.method.leap_norm is False


def test_case_4_dict_overrides_merge_with_the_experiment_and_the_command_line_wins():
    rc = run_config(compose(["experiment=quick", "pde.threshold={u_rel_l2:0.1,coef_rel_err:0.3}"]))
    assert (rc.threshold_u, rc.threshold_coef) == (0.1, 0.3)
    # thresholds are both fixed by hand or both from the val runs, never half and half
    with pytest.raises(ConfigError, match="set both u_rel_l2 and coef_rel_err, or neither"):
        run_config(compose(["experiment=quick", "pde.threshold={u_rel_l2:0.1}"]))
    cfg = compose(["experiment=quick", "pde=darcy", "pde.weights={data:10}"])
    assert dict(cfg.pde.weights) == {"residual": 1.0, "boundary": 1.0, "data": 10.0}
    assert "u_rel_l2:0.1" not in OmegaConf.to_yaml(compose(["experiment=quick",
                                                            "pde.threshold={u_rel_l2:0.1}"]))


def test_one_source_of_defaults():
    """The YAML files only override: the package defaults are the dataclasses'."""
    cfg = compose([])
    assert OmegaConf.to_object(cfg.adapt) == AdaptSettings()
    pde = OmegaConf.to_object(cfg.pde)
    assert dataclasses.replace(pde, grid={}, threshold=PDESettings().threshold) == \
        dataclasses.replace(PDESettings(name="burgers"))
    for name in METHODS:  # every method composes to its own settings class
        ms = settings(compose([f"method={name}"])).method
        assert type(ms) is method_class(name).settings and ms.name == name
        assert isinstance(ms, MethodSettings)


def test_experiment_tables_name_known_families_and_methods(tmp_path):
    cfg = tmp_path / "config"
    shutil.copytree(REPO / "config", cfg)
    (cfg / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nexperiment:\n  name: typo\n"
        "  method_overrides:\n    mamll: {outer_steps: 3}\n")
    with pytest.raises(ConfigError, match=r"experiment.method_overrides: unknown method\(s\) "
                                          r"\['mamll'\]"):
        compose(["experiment=typo"], cfg)
    (cfg / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nexperiment:\n  name: typo\n  methods: [scratch, anil]\n")
    with pytest.raises(ConfigError, match=r"experiment.methods .*unknown \['anil'\]"):
        run_config(compose(["experiment=typo"], cfg))
    (cfg / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nexperiment:\n  name: typo\n"
        "  method_overrides:\n    maml: {outer_steps: many}\n")
    with pytest.raises(ConfigError, match="experiment.method_overrides.maml: invalid value for "
                                          "outer_steps"):
        compose(["experiment=typo", "method=maml"], cfg)


def _digests(overrides):
    cfg = compose(overrides)
    return {c: digest(cfg, c) for c in DIGEST_KEYS}


def test_digests_change_with_exactly_the_settings_a_command_reads():
    base = _digests(["experiment=quick", "method=maml"])
    assert base == _digests(["experiment=quick", "method=maml", "threads=2", "out=x.nc",
                             "tasks_file=t.nc", "method.outer_steps=88"])  # quick's budget's
    budget = _digests(["experiment=quick", "method=maml", "method.outer_steps=25"])
    assert {c for c in base if base[c] != budget[c]} == {"meta-train", "adapt-tasks",
                                                          "tune-method-lr"}
    # the meta-training budget reaches the digests through the outer steps it buys
    budget = _digests(["experiment=quick", "method=maml", "experiment.meta_budget=4800"])
    assert {c for c in base if base[c] != budget[c]} == {"meta-train", "adapt-tasks",
                                                          "tune-method-lr"}
    # a setting used at adaptation (scratch_lbfgs's L-BFGS share) reruns the method's
    # own-rate tune as well as its adaptation
    lbfgs = [_digests(["experiment=quick", "method=scratch_lbfgs", f"method.lbfgs_fraction={f}"])
             for f in (0.5, 0.25)]
    assert {c for c in lbfgs[0] if lbfgs[0][c] != lbfgs[1][c]} == {
        "meta-train", "adapt-tasks", "tune-method-lr"}
    threshold = _digests(["experiment=quick", "method=maml",
                          "pde.threshold={u_rel_l2:0.2,coef_rel_err:0.3}"])
    assert {c for c in base if base[c] != threshold[c]} == {"adapt-tasks"}
    noise = _digests(["experiment=quick", "method=maml", "pde.noise=0.02"])
    assert {c for c in base if base[c] != noise[c]} == set(DIGEST_KEYS)
    seed = _digests(["experiment=quick", "method=maml", "seed=1"])
    assert seed["generate-tasks"] == base["generate-tasks"] != seed["meta-train"]


def test_config_command_prints_the_resolved_configuration(capsys):
    assert main(["config", "method=leap", "resume=yes"]) == 0
    out = capsys.readouterr().out
    assert "leap_norm: true" in out and "resume: true" in out


def test_outer_steps_beside_a_meta_budget_is_refused(tmp_path):
    """experiment.meta_budget sets every budgeted method's outer_steps, so an experiment's
    method_overrides that set them would have no effect: refused at composition; without
    a budget they apply, and a command-line method.outer_steps= still beats the budget."""
    cfg = tmp_path / "config"
    shutil.copytree(REPO / "config", cfg)
    experiment = cfg / "experiment" / "dead.yaml"
    experiment.write_text(
        "# @package _global_\nexperiment:\n  name: dead\n  meta_budget: 270\n"
        "  method_overrides:\n    maml: {outer_steps: 2, meta_batch: 2}\n"
        "    pretrain: {outer_steps: 4}\n    transfer: {transfer_steps: 10}\n")
    for method in ("maml", "scratch"):  # whichever method is composed
        with pytest.raises(ConfigError) as e:
            compose(["experiment=dead", f"method={method}"], cfg)
        assert str(e.value) == (
            "outer_steps of maml, pretrain in experiment.method_overrides has no effect: "
            "experiment.meta_budget=270 sets it; remove one (method.outer_steps=N on the "
            "command line still overrides the budget)")
    composed = compose(["experiment=dead", "method=maml", "experiment.meta_budget=null"], cfg)
    assert composed.method.outer_steps == 2
    experiment.write_text(experiment.read_text().replace("outer_steps: 2, ", "")
                          .replace("pretrain: {outer_steps: 4}", "pretrain: {meta_batch: 2}"))
    # the budget's: 270 / (2 tasks × (5 + 1) steps × second_order_cost 2.25)
    assert compose(["experiment=dead", "method=maml"], cfg).method.outer_steps == 10
    assert compose(["experiment=dead", "method=maml", "method.outer_steps=7"],
                   cfg).method.outer_steps == 7


@pytest.mark.parametrize("experiment", sorted(p.stem for p in
                                              (REPO / "config" / "experiment").glob("*.yaml")))
def test_every_shipped_experiment_composes_for_every_method(experiment):
    for method in METHODS:
        run_config(compose([f"experiment={experiment}", f"method={method}"]))


def test_docstring_references_to_metapinn_names_resolve():
    """Every ``metapinn.<module>.<name>`` a docstring or comment of the package names in
    backticks exists (a renamed function leaves no dangling reference)."""
    import importlib
    import re

    import metapinn

    def resolves(ref: str) -> bool:
        parts = ref.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for name in parts[i:]:
                    obj = getattr(obj, name)
            except AttributeError:
                return False
            return True
        return False

    root = Path(metapinn.__file__).parent
    refs = {(str(path.relative_to(root)), ref) for path in root.rglob("*.py")
            for ref in re.findall(r"`~?(metapinn(?:\.\w+)+)(?:\(\))?`", path.read_text())}
    assert len(refs) > 20
    assert [r for r in sorted(refs) if not resolves(r[1])] == []
