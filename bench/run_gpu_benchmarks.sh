#!/usr/bin/env bash
# Every GPU figure bench/RESULTS.md asks for, in one go (about 10 minutes on one H100): speed against
# sentence-transformers (bert-base shape, batch 256, bf16, with the torch_compile row), the 277,811-triplet epoch
# rehearsal, and the memory of the plain and cached paths. Run from the repository root:
#     bash bench/run_gpu_benchmarks.sh [OUTPUT_DIR]        # default: bench/gpu-results-<date>
# Each command's output goes to OUTPUT_DIR/<name>.txt; a failing command is reported and the others still run.
set -u
out="${1:-bench/gpu-results-$(date +%Y-%m-%d)}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/device.txt" 2>&1
python -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> "$out/device.txt"
status=0
run() {
    local name="$1"; shift
    echo "== $name: $*" | tee "$out/$name.txt"
    local start=$SECONDS
    "$@" >> "$out/$name.txt" 2>&1 || { echo "!! $name failed (exit $?)"; status=1; }
    echo "   $((SECONDS - start)) s; last lines:"; tail -n 12 "$out/$name.txt"
}
run throughput python bench/throughput.py --shape bert-base --device cuda
run epoch_rehearsal python bench/epoch_rehearsal.py --shape bert-base --device cuda
run memory python bench/memory.py --shape bert-base --device cuda --batches 256 1024
exit $status
