#!/usr/bin/env bash
# Forward+backward throughput of the Dream model: cgrpo's CpuBackend against PyTorch (Debian python3-torch,
# the same model and shapes, the same thread count), in one run. Usage: bench/model_vs_torch.sh [preset B L threads]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-small} B=${2:-4} L=${3:-256} threads=${4:-2}
/usr/bin/python3 -c "import torch" 2>/dev/null ||
  { echo "python3-torch is the benchmark peer: apt-get install python3-torch"; exit 1; }
OPENBLAS_NUM_THREADS=$threads "$root/build/bench/bench_model" "$preset" "$B" "$L" 3
OMP_NUM_THREADS=$threads /usr/bin/python3 "$root/bench/torch_peer.py" "$preset" "$B" "$L" 3 "$threads"
