#!/usr/bin/env bash
# A real, throw-away, one-node SLURM cluster on this host, for tests/test_slurm.py.
#
#   cluster.sh install        apt-get install slurm-wlm and munge if they are missing (root;
#                             CI runs it from .ci/slurm-setup, never from pytest)
#   cluster.sh start DIR      write DIR/slurm.conf, start munged, slurmctld and slurmd
#                             (everything under DIR), wait until the node is idle; prints
#                             SLURM_CONF=DIR/slurm.conf and SLURM_BIN=DIR/bin on stdout. It
#                             installs nothing: without SLURM it exits 77
#   cluster.sh stop DIR       stop exactly the daemons `start DIR` started (by their pid files)
#
# Nothing outside DIR is written except by `install`: the munge key, socket, pid and log files,
# the SLURM state, spool and log directories all live in DIR. Clients find the cluster through
# SLURM_CONF (export it for sbatch/squeue/scancel) and through DIR/bin/srun (put DIR/bin first on
# PATH): the slurm executor plugin's job step drops every SLURM_* variable, SLURM_CONF included,
# before it calls `srun` inside the batch job. Real clusters keep slurm.conf in /etc/slurm or run
# configless; this one needs the wrapper. The node advertises one fake GPU per core (gres gpu,
# devices linked to /dev/null) so that GPU requests are scheduled on machines without one. There
# is no accounting (accounting_storage/none): query job states with squeue, not sacct.
#
# Exit status of `start`: 0 = cluster up; 77 = cannot run here (not root, SLURM or munge not
# installed); anything else = a daemon failed (the daemons' logs are printed on stderr).
# Exit status of `install`: 0 = installed (or already there); 77 = cannot install (not root, no
# apt-get, apt-get failed). Environment: SLURM_TEST_PORT (slurmctld port, default 16817),
# SLURM_TEST_SLURMD_PORT (default SLURM_TEST_PORT + 1), SLURM_TEST_PARTITION (default "test"),
# SLURM_TEST_START_TIMEOUT (seconds for the node to come up, default 60).
set -euo pipefail

PORT=${SLURM_TEST_PORT:-16817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-$((PORT + 1))}
PARTITION=${SLURM_TEST_PARTITION:-test}

die() { echo "cluster.sh: ${*:2}" >&2; exit "$1"; }

# the programs `start` and tests/test_slurm.py run
NEEDED=(slurmctld slurmd munged sbatch srun squeue scontrol scancel sinfo)

missing() {
    local prog out=()
    for prog in "${NEEDED[@]}"; do command -v "$prog" >/dev/null || out+=("$prog"); done
    echo "${out[*]}"
}

have_slurm() { [[ -z $(missing) ]]; }

install() {
    have_slurm && return 0
    [[ $(id -u) == 0 ]] || die 77 "slurm-wlm/munge are not installed and not root (no apt-get)"
    command -v apt-get >/dev/null || die 77 "slurm-wlm/munge are not installed and no apt-get"
    echo "cluster.sh: installing slurm-wlm and munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends slurm-wlm munge; } \
        >&2 || die 77 "apt-get install slurm-wlm munge failed"
    have_slurm || die 77 "slurm-wlm installed but not on PATH: $(missing)"
}

# alive DIR NAME: the daemon NAME that `start DIR` launched is running (its pid file names a
# live process of that name)
alive() {
    local pid
    [[ -s $1/run/$2.pid ]] || return 1
    pid=$(<"$1/run/$2.pid")
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
}

stop() {
    local dir=$1 name pid
    # cancel the cluster's jobs first (e.g. after a test timed out): slurmd then ends their
    # processes, where a job step would otherwise outlive the daemons
    if alive "$dir" slurmctld && alive "$dir" slurmd; then
        SLURM_CONF=$dir/slurm.conf timeout 10 scancel --user "$(id -un)" 2>/dev/null || true
        for _ in $(seq 60); do
            [[ -z $(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    # reverse start order; each pid file was written by the daemon `start` launched
    for name in slurmd slurmctld munged; do
        [[ -s $dir/run/$name.pid ]] || continue
        pid=$(<"$dir/run/$name.pid")
        # only signal the process if it still is the daemon we started
        if alive "$dir" "$name"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
        rm -f "$dir/run/$name.pid"
    done
}

show_logs() {
    local f
    for f in "$1"/log/*.log; do
        [[ -f $f ]] || continue
        echo "---- $f (tail)" >&2
        tail -n 20 "$f" >&2
    done
}

start() {
    local dir=$1
    [[ $(id -u) == 0 ]] || die 77 "not root: the test cluster runs slurmd/slurmctld as root"
    have_slurm || die 77 "SLURM/munge not installed (not on PATH: $(missing)); install them" \
        "with 'bash tests/slurm/cluster.sh install' (root, apt-get)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    mkdir -p "$dir"/{run,log,state,spool,munge,bin,dev}
    chmod 700 "$dir/munge"

    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc --all)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

    # munge: a private key, socket, pid and log file in DIR (no /etc/munge, no /run/munge)
    if [[ ! -s $dir/munge/munge.key ]]; then
        if command -v mungekey >/dev/null; then
            mungekey -c -k "$dir/munge/munge.key"
        else
            dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
        fi
    fi
    chmod 600 "$dir/munge/munge.key"

    cat >"$dir/slurm.conf" <<EOF
# generated by tests/slurm/cluster.sh: a one-node test cluster on $host
ClusterName=metapinntest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups needed (containers)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
# finished jobs stay visible to squeue/scontrol for an hour: the executor plugin polls squeue,
# and the test reads every job's request back at the end
MinJobAge=3600
KillWait=5
ReturnToService=2
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$cpus State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # one fake GPU per core, so GPU jobs run as parallel as CPU jobs; slurmd wants a character
    # device per GPU: links to /dev/null
    local i
    : >"$dir/gres.conf"
    for ((i = 0; i < cpus; i++)); do
        ln -sfn /dev/null "$dir/dev/gpu$i"
        echo "NodeName=$host Name=gpu File=$dir/dev/gpu$i" >>"$dir/gres.conf"
    done
    export SLURM_CONF=$dir/slurm.conf
    printf '%s\n' '#!/bin/sh' \
        '# the slurm executor job step unsets SLURM_CONF before it calls srun (see cluster.sh)' \
        "SLURM_CONF=\${SLURM_CONF:-$SLURM_CONF} exec $(command -v srun) \"\$@\"" \
        >"$dir/bin/srun"
    chmod +x "$dir/bin/srun"

    trap 'rc=$?; if [[ $rc != 0 ]]; then show_logs "$dir"; stop "$dir"; fi' EXIT
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed" || die 1 "munged failed to start"
    slurmctld -i || die 1 "slurmctld failed to start"
    slurmd -N "$host" || die 1 "slurmd failed to start"

    local state="" name limit=$((SECONDS + ${SLURM_TEST_START_TIMEOUT:-60}))
    local settle=$((SECONDS + 10))
    while ((SECONDS < limit)); do
        for name in munged slurmctld slurmd; do
            # a daemon writes its pid file after it has forked: give it 10 s to appear
            if [[ ! -s $dir/run/$name.pid ]] && ((SECONDS < settle)); then continue; fi
            alive "$dir" "$name" || die 1 "$name exited"
        done
        state=$(timeout 5 sinfo -h -N -n "$host" -o %T 2>/dev/null || true)
        [[ $state == idle ]] && break
        sleep 1
    done
    [[ $state == idle ]] || die 1 "node $host not idle in time (state: '${state:-none}')"
    trap - EXIT
    echo "SLURM_CONF=$SLURM_CONF"
    echo "SLURM_BIN=$dir/bin"
}

case ${1:-} in
    install) install ;;
    start) [[ $# == 2 ]] || die 2 "usage: $0 start DIR"; start "$2" ;;
    stop) [[ $# == 2 ]] || die 2 "usage: $0 stop DIR"; stop "$2" ;;
    *) die 2 "usage: $0 install | start DIR | stop DIR" ;;
esac
