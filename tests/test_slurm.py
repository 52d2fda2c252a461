"""The workflow on a real one-node SLURM cluster through profiles/slurm (issue 5).

tests/slurm/cluster.sh starts munged, slurmctld and slurmd for this host (root); the
`tiny_slurm` experiment (`tiny` on one family and five methods: the whole DAG, every rule,
in minutes) then runs with the profile while a local `--cores 2` run of the same experiment runs
beside it. One SLURM run checks that every non-local job went through sbatch, that a GPU
request of meta_train jobs (given on the command line: the profile asks for none with the
default device=cpu) reaches sbatch and SLURM, that a meta_train job cancelled with scancel
while running is resubmitted and nothing is lost, and that the numbers equal the local
run's.

The test installs nothing: SLURM and munge must already be on PATH (CI installs them before
pytest with `bash .ci/slurm-setup`, i.e. `bash tests/slurm/cluster.sh install`, root and
apt-get). Skipped with the reason where they are missing, where the cluster cannot start (not
root, a daemon fails) or with METAPINN_NO_SLURM=1; with METAPINN_REQUIRE_SLURM=1 (CI) a missing
or failing cluster is a failure instead of a skip.
"""

import collections
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
SNAKEMAKE = shutil.which("snakemake")
PARTITION = "metapinntest"
EXPERIMENT = "tiny_slurm"  # tiny on one family and five methods (minutes)
GPU_RULES = {"meta_train"}
CANCEL_RULE = "meta_train"
TIMEOUT_S = 1800  # the whole SLURM run; the full tiny experiment took 12-15 min on 2 cores
# what cluster.sh starts and what this test calls (Debian: slurm-wlm, slurm-client, munge)
SLURM_PROGRAMS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "squeue", "scontrol",
                  "scancel", "sinfo")

pytestmark = pytest.mark.slurm


def _unavailable(reason):
    if os.environ.get("METAPINN_REQUIRE_SLURM") == "1":
        pytest.fail(f"METAPINN_REQUIRE_SLURM=1 but no SLURM cluster: {reason}", pytrace=False)
    pytest.skip(f"no SLURM cluster: {reason}")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """Environment for Snakemake and SLURM clients that points at a fresh test cluster."""
    if os.environ.get("METAPINN_NO_SLURM") == "1":
        pytest.skip("METAPINN_NO_SLURM=1")
    if SNAKEMAKE is None:
        _unavailable("snakemake is not installed")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        _unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    missing = [prog for prog in SLURM_PROGRAMS if shutil.which(prog) is None]
    if missing:
        _unavailable(f"SLURM/munge not installed (not on PATH: {', '.join(missing)}); as root, "
                     "`bash tests/slurm/cluster.sh install` installs slurm-wlm and munge")
    if os.geteuid() != 0:
        _unavailable("not root: the test cluster's slurmd/slurmctld run as root")
    if shutil.which("bash") is None:
        _unavailable("no bash")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_", "SALLOC_"))}
    ctl_port, slurmd_port = _free_ports(2)
    # short enough for the munge socket path (108 bytes)
    cluster_dir = tmp_path_factory.mktemp("slurm")
    cluster = {"SLURM_TEST_PORT": str(ctl_port), "SLURM_TEST_SLURMD_PORT": str(slurmd_port),
               "SLURM_TEST_PARTITION": PARTITION}
    try:
        try:
            r = subprocess.run(["bash", str(CLUSTER), "start", str(cluster_dir)],
                               env={**base, **cluster}, capture_output=True, text=True,
                               timeout=180, check=False)
        except subprocess.TimeoutExpired:
            _unavailable("tests/slurm/cluster.sh start timed out")
        if r.returncode != 0:
            _unavailable(f"tests/slurm/cluster.sh start exited {r.returncode}:\n"
                         + r.stderr[-3000:])
        started = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        yield {**base,
               "SLURM_CONF": started["SLURM_CONF"],
               "PATH": started["SLURM_BIN"] + os.pathsep + base.get("PATH", ""),
               # read by profiles/slurm as the account/partition placeholders
               "SBATCH_ACCOUNT": "metapinn-ci", "SBATCH_PARTITION": PARTITION}
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(cluster_dir)], capture_output=True,
                       timeout=120, check=False)


def _snakemake_cmd(workdir, *args):
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--config", f"experiment={EXPERIMENT}", *args]


def _slurm_jobs(env):
    """{slurm job id: scontrol's fields} of every job the test cluster still remembers."""
    out = subprocess.run(["scontrol", "--oneliner", "show", "job"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def _rule_of(comment):
    # the plugin's job comment: rule_<rule>[_wildcards_<values>]
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def _cancel_a_running_job(proc, env, deadline):
    """scancel the first running job of CANCEL_RULE; return (slurm job id, its comment)."""
    tried = set()
    while time.monotonic() < deadline and proc.poll() is None:
        r = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
        running = [line.split("|", 1) for line in r.stdout.splitlines() if "|" in line]
        for jobid, comment in running:
            if jobid in tried or _rule_of(comment) != CANCEL_RULE:
                continue
            tried.add(jobid)
            subprocess.run(["scancel", jobid], env=env, timeout=60, check=False)
            for _ in range(100):  # a job that finished in the meantime is no use
                state = _slurm_jobs(env).get(jobid, {}).get("JobState")
                if state not in ("RUNNING", "COMPLETING", None):
                    break
                time.sleep(0.2)
            if state == "CANCELLED":
                return jobid, comment
        time.sleep(0.5)
    return None, None


def test_tiny_workflow_on_slurm(slurm_env, tmp_path, capsys):
    env = slurm_env
    slurm_wd, local_wd = tmp_path / "slurm", tmp_path / "local"
    profile = ("--profile", str(PROFILE))

    # the jobs to expect: a dry run with the profile
    dry = subprocess.run(_snakemake_cmd(slurm_wd, *profile, "-n"), env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    dag = collections.Counter(re.findall(r"^(?:local)?rule (\w+):$", dry.stdout + dry.stderr,
                                         flags=re.M))
    assert dag[CANCEL_RULE] > 1 and all(dag[r] for r in GPU_RULES), dag

    # the local reference run, beside the SLURM run
    local_log = (tmp_path / "local.log").open("w")
    reference = subprocess.Popen(_snakemake_cmd(local_wd, "--cores", "2"), env=env,
                                 stdout=local_log, stderr=subprocess.STDOUT)
    log_path = tmp_path / "slurm.log"
    t0 = time.monotonic()
    with log_path.open("w") as log:
        # test-only settings on the command line, the rest from the profile: --verbose logs
        # every sbatch call; keep the SLURM logs of successful jobs too; poll SLURM often;
        # meta_train jobs ask for a GPU (as --config device=cuda would make them; the jobs
        # themselves compute on the CPU, which has no CUDA here) so that the request's way
        # through sbatch into SLURM's record is checked
        proc = subprocess.Popen(
            _snakemake_cmd(slurm_wd, *profile, "--verbose", "--slurm-keep-successful-logs",
                           "--slurm-init-seconds-before-status-checks", "2",
                           "--set-resources", "meta_train:gpu=1"),
            env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            cancelled, cancelled_comment = _cancel_a_running_job(proc, env, deadline)
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.monotonic() - t0
    try:
        local_rc = reference.wait(timeout=TIMEOUT_S)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
        local_log.close()
    text = log_path.read_text()
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.",
                           text)
    calls = re.findall(r"^sbatch call: (sbatch .*)$", text, flags=re.M)
    gpu_call = next((c for c in calls for r in GPU_RULES if f"--comment rule_{r}_" in c), None)
    smk_job = {slurm_id: smk_id for smk_id, slurm_id, _ in submitted}  # SLURM -> Snakemake job
    retry = [j for smk_id, j, _ in submitted
             if j != cancelled and smk_id == smk_job.get(cancelled)]
    with capsys.disabled():  # for the CI log, also when an assertion below fails
        print(f"\n[slurm] SLURM run: rc {rc}, {wall:.0f} s wall, {len(submitted)} jobs submitted "
              f"with sbatch; cancelled SLURM job {cancelled} ({cancelled_comment}), "
              f"resubmitted as {retry}; local --cores 2 run: rc {local_rc}")
        print(f"[slurm] a GPU job's sbatch call: {gpu_call}")
    assert rc == 0, f"SLURM run failed (rc {rc}):\n{text[-5000:]}"
    assert local_rc == 0, (tmp_path / "local.log").read_text()[-5000:]
    assert cancelled is not None, f"no running {CANCEL_RULE} job could be cancelled"

    # local rules (`all`, a target without a command, and any `localrules:`) run in Snakemake's
    # own process, all of their jobs; every other job went through sbatch, exactly once, plus
    # the cancelled job's retry
    local = collections.Counter(re.findall(r"^localrule (\w+):$", text, flags=re.M))
    assert all(local[r] == dag[r] for r in local), (local, dag)
    assert not local.keys() & (GPU_RULES | {CANCEL_RULE}), local
    expected = dag - local
    n_expected = sum(expected.values())
    jobs = _slurm_jobs(env)
    assert sorted(j for _, j, _ in submitted) == sorted(jobs), (submitted, sorted(jobs))
    comments = collections.Counter(job["Comment"] for job in jobs.values())
    assert collections.Counter(_rule_of(c) for c in comments) == expected
    assert len(jobs) == n_expected + 1
    assert comments[cancelled_comment] == 2 and sum(comments.values()) == len(comments) + 1
    for _, jobid, slurm_log in submitted:
        assert Path(slurm_log).is_file(), slurm_log
        assert f"rule_{_rule_of(jobs[jobid]['Comment'])}" in Path(slurm_log).parts
        assert jobs[jobid]["JobState"] == ("CANCELLED" if jobid == cancelled else "COMPLETED")

    # GPU jobs: sbatch asked for --gpus=1, and SLURM recorded the request (gres:gpu:1)
    assert len(calls) == len(jobs)
    for call in calls:
        rule = _rule_of(re.search(r"--comment (\S+)", call).group(1).strip("'"))
        assert ("--gpus=1" in call) == (rule in GPU_RULES), call
    for jobid, job in jobs.items():
        asked = "gres:gpu:1" in job.get("TresPerJob", "")
        assert asked == (_rule_of(job["Comment"]) in GPU_RULES), (jobid, job)

    # the cancelled job was resubmitted (same Snakemake job, a new SLURM job) and completed
    assert len(retry) == 1 and int(retry[0]) > int(cancelled), (cancelled, retry)
    assert jobs[retry[0]]["Comment"] == cancelled_comment
    assert re.search(rf"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'", text)
    assert f"Trying to restart job {smk_job[cancelled]}." in text

    # same numbers as the local run
    results = f"results/{EXPERIMENT}"
    with (xr.open_dataset(slurm_wd / results / "convergence.nc") as a,
          xr.open_dataset(local_wd / results / "convergence.nc") as b):
        for var in ("u_rel_l2", "loss", "coef_rel_err_max"):
            np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-12, atol=0,
                                       err_msg=var)
    pde, method, seed = cancelled_comment.split("_wildcards_")[1].split("_")
    history = f"{results}/meta/{pde}/{method}/seed{seed}/history.nc"
    with xr.open_dataset(slurm_wd / history) as a, xr.open_dataset(local_wd / history) as b:
        for var in ("meta_loss", "val_loss"):
            np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-12, atol=0)

