#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to try the slurm profile without a cluster.
#
#   sudo scripts/local_slurm.sh install          apt-get install slurm-wlm munge (Debian/Ubuntu)
#   sudo scripts/local_slurm.sh start [STATE]    write STATE/slurm.conf, start munged, slurmctld, slurmd
#   sudo scripts/local_slurm.sh stop [STATE]     stop the daemons started from STATE
#
# STATE defaults to /tmp/juicebox-slurm. The config is written there and linked from
# /etc/slurm/slurm.conf and gres.conf (inside a job, Snakemake's srun steps drop SLURM_CONF, so
# the config must sit where SLURM looks by default); an existing non-link config is left alone. Two partitions on the one node: `cpu` (default) and
# `gpu`, and GPUS fake GPUs (a gres backed by dummy files) so GPU jobs can be scheduled
# and their requests inspected with `scontrol show job`. There is no accounting database:
# run snakemake with `--slurm-status-command squeue --slurm-no-account`; MinJobAge=300 keeps
# finished jobs visible to squeue long enough for Snakemake's status checks.
set -euo pipefail

action=${1:?usage: local_slurm.sh install|start|stop [STATE]}
state=$(realpath -m "${2:-/tmp/juicebox-slurm}")
gpus=${GPUS:-2}
host=$(hostname -s)

die() { echo "local_slurm.sh: $*" >&2; exit 1; }

install_packages() {
    [[ $(id -u) == 0 ]] || die "installing packages needs root"
    command -v apt-get >/dev/null || die "no apt-get: install slurm-wlm and munge with your package manager"
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
}

write_config() {
    local cpus mem_mb
    cpus=$(nproc)
    # Leave 1 GiB to the system; SLURM refuses jobs asking for more than RealMemory.
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$state/ctld" "$state/spool"
    for ((i = 0; i < gpus; i++)); do touch "$state/gpu$i"; done
    cat > "$state/slurm.conf" <<EOF
ClusterName=juicebox
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
GresTypes=gpu
MinJobAge=300
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.txt
NodeName=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$gpus State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
    [[ $gpus -gt 0 ]] && echo "NodeName=$host Name=gpu File=$state/gpu[0-$((gpus - 1))]" > "$state/gres.conf"
    [[ $gpus -gt 0 ]] || : > "$state/gres.conf"
    local name
    mkdir -p /etc/slurm
    for name in slurm.conf gres.conf; do
        if [[ -e /etc/slurm/$name && ! -L /etc/slurm/$name ]]; then
            die "/etc/slurm/$name exists and is not ours: this machine has a SLURM already"
        fi
        ln -sfn "$state/$name" "/etc/slurm/$name"
    done
}

start() {
    [[ $(id -u) == 0 ]] || die "starting slurmctld/slurmd needs root"
    command -v slurmctld >/dev/null || die "slurm-wlm is not installed: run '$0 install' first"
    write_config
    mkdir -p /run/munge && chown munge:munge /run/munge
    pgrep -x munged >/dev/null || runuser -u munge -- munged
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        die "slurmctld or slurmd is already running: stop it first ('$0 stop STATE')"
    fi
    slurmctld
    slurmd
    for _ in $(seq 60); do
        if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "SLURM is up (config: $state/slurm.conf)"
            return 0
        fi
        sleep 1
    done
    die "the node did not come up; see $state/slurmctld.log and $state/slurmd.log"
}

stop() {
    local pidfile pid
    for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid"; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    done
}

case $action in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    *) die "unknown action '$action' (install|start|stop)" ;;
esac
