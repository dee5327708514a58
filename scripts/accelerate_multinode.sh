#!/usr/bin/env bash
# Multi-node training inside one SLURM allocation. The train rules run
#   srun --nodes=N --ntasks-per-node=1 bash accelerate_multinode.sh GPUS_PER_NODE CONFIG script args...
# so this runs once per node and starts `accelerate launch` there as machine SLURM_NODEID of
# SLURM_NNODES, all meeting at the allocation's first node. CONFIG may be empty (accelerate's
# default config). MAIN_PROCESS_PORT overrides the rendezvous port (default 29500).
set -euo pipefail
gpus_per_node=${1:?usage: accelerate_multinode.sh GPUS_PER_NODE CONFIG script [args...]}
config=$2
shift 2
: "${SLURM_NNODES:?not inside a SLURM allocation}" "${SLURM_NODEID:?not inside srun}"
main_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
exec accelerate launch ${config:+--config_file "$config"} \
    --num_machines "$SLURM_NNODES" \
    --num_processes $((SLURM_NNODES * gpus_per_node)) \
    --machine_rank "$SLURM_NODEID" \
    --main_process_ip "$main_node" \
    --main_process_port "${MAIN_PROCESS_PORT:-29500}" \
    "$@"
