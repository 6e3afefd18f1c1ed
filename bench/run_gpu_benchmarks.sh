#!/usr/bin/env bash
# Every GPU figure bench/RESULTS.md asks for, most important first: speed against sentence-transformers (bert-base
# shape, batch 256, bf16; the product's default, CUDA graphs, and a row with them off), the GPU-only tests of
# cuda_graphs, the 277,811-triplet epoch rehearsal by default (CUDA graphs, from an empty compiler cache as a user's
# first run) and with cuda_graphs off, the rehearsal's tokenization by process count on this machine's CPUs, and the
# memory of the plain, cached and activation-checkpointed steps. Run from the repository root:
#     bash bench/run_gpu_benchmarks.sh [OUTPUT_DIR [STAGE ...]]     # default: bench/gpu-results-<date>, default stages
# Stages: throughput cuda_graphs_tests epoch_rehearsal epoch_rehearsal_eager tokenization memory (the default, in that
# order), and throughput_compiled epoch_rehearsal_compiled (the compile_layers opt-in, which did not pay:
# bench/RESULTS.md).
# On one H100 (2026-11-28): throughput 159 s, cuda_graphs_tests 50 s, epoch_rehearsal 101 s, epoch_rehearsal_eager
# 104 s; earlier: memory 75 s (two rows a batch; three now), throughput_compiled 177 s, epoch_rehearsal_compiled about 130 s; tokenization (CPU
# only) took 106 s on 2 cores. Where one command may run only 10 minutes, split them, e.g.
#     bash bench/run_gpu_benchmarks.sh "$OUT" throughput cuda_graphs_tests epoch_rehearsal epoch_rehearsal_eager
#     bash bench/run_gpu_benchmarks.sh "$OUT" tokenization memory
# Each stage's output goes to OUTPUT_DIR/<stage>.txt as it runs; a failing stage is reported and the others still run.
# Data: ../shared/data beside the checkout, or the folder BENCH_DATA names.
set -u
# Everything here is local. Offline, a Hub request (transformers 5.25 may fetch Hub kernels for the peer's model on a
# GPU; this project's models are loaded without them) fails at once instead of waiting on an unreachable network.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
out="${1:-bench/gpu-results-$(date +%Y-%m-%d)}"
shift $(( $# > 0 ? 1 : 0 ))
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(throughput cuda_graphs_tests epoch_rehearsal epoch_rehearsal_eager tokenization memory)
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/device.txt" 2>&1
python3 -c "import sys, torch, transformers, sentence_transformers as st, datasets; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'sentence-transformers', st.__version__, 'datasets', datasets.__version__)" >> "$out/device.txt"
status=0
run() {
    local name="$1"; shift
    echo "== $name: $*" | tee "$out/$name.txt"
    local start=$SECONDS
    "$@" >> "$out/$name.txt" 2>&1 || { echo "!! $name failed (exit $?)"; status=1; }
    echo "   $((SECONDS - start)) s; last lines:"; tail -n 12 "$out/$name.txt"
}
for stage in "${stages[@]}"; do
    case "$stage" in
        throughput) run throughput python3 bench/throughput.py --shape bert-base --device cuda ;;
        cuda_graphs_tests) run cuda_graphs_tests python3 -m pytest -q tests/test_cuda_graphs.py ;;
        epoch_rehearsal) run epoch_rehearsal env TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)" python3 bench/epoch_rehearsal.py --shape bert-base --device cuda ;;
        epoch_rehearsal_eager) run epoch_rehearsal_eager python3 bench/epoch_rehearsal.py --shape bert-base --device cuda --no-cuda-graphs ;;
        tokenization) run tokenization python3 bench/tokenization.py ;;
        memory) run memory python3 bench/memory.py --shape bert-base --device cuda --batches 256 1024 ;;
        throughput_compiled) run throughput_compiled python3 bench/throughput.py --shape bert-base --device cuda --compile-row --no-eager-row ;;
        epoch_rehearsal_compiled) run epoch_rehearsal_compiled python3 bench/epoch_rehearsal.py --shape bert-base --device cuda --compile-layers ;;
        *) echo "!! unknown stage $stage (throughput, cuda_graphs_tests, epoch_rehearsal, epoch_rehearsal_eager, tokenization, memory, throughput_compiled, epoch_rehearsal_compiled)"; status=1 ;;
    esac
done
exit $status
