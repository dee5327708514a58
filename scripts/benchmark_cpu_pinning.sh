#!/usr/bin/env bash
# The cost of cpu_reproducible: one experiment's SFT job, pinned and unpinned, RUNS times each.
#
#   scripts/benchmark_cpu_pinning.sh WORKDIR [EXP] [RUNS]
#
# WORKDIR is a working directory where the workflow has run (its config/ and results/). The SFT
# command of EXP (default raw) is taken from Snakemake's dry-run printout and run as it is, into
# a scratch folder, alternately with the pinned settings (scripts/juicebox/cpu.py) and without,
# RUNS times each (default 3); prints each run's wall seconds and the SHA-256 prefix of the model
# it wrote, then the medians. Run it on an otherwise idle machine.
set -euo pipefail
work=$(realpath "${1:?usage: benchmark_cpu_pinning.sh WORKDIR [EXP] [RUNS]}")
exp=${2:-raw}
runs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH"
cd "$work"
# The job's shell command as Snakemake would run it (its log redirection dropped).
cmd=$(snakemake --snakefile "$root/Snakefile" -n -p --forcerun sft "results/$exp/sft/summary.json" 2>/dev/null \
      | grep -m1 "train.py sft --data results/$exp/processed/" | sed 's/^Shell command: //; s/ > [^ ]*sft.log 2>&1$//' || true)
[[ -n $cmd ]] || { echo "no sft command for $exp in $work" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmd=${cmd//results\/$exp\/sft\//$scratch\/sft\/}
pinned="ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE"
declare -A times
for ((i = 1; i <= runs; i++)); do
    for mode in pinned unpinned; do
        rm -rf "$scratch/sft" && mkdir -p "$scratch/sft"
        envs=$([[ $mode == pinned ]] && echo "$pinned" || true)
        start=$EPOCHREALTIME
        env -u ATEN_CPU_CAPABILITY -u ONEDNN_MAX_CPU_ISA -u MKL_CBWR $envs bash -c "$cmd" > "$scratch/log" 2>&1
        seconds=$(awk "BEGIN {print $EPOCHREALTIME - $start}")
        times[$mode]+="$seconds "
        printf '%-8s run %d: %7.1f s, model %s\n' "$mode" "$i" "$seconds" \
            "$(sha256sum "$scratch/sft/model/model.safetensors" | cut -c1-16)"
    done
done
for mode in pinned unpinned; do
    printf '%-8s median %.1f s\n' "$mode" "$(printf '%s\n' ${times[$mode]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
