#!/usr/bin/env bash
# The GPU check of issue #14, in one command, from the repository root:
#
#   bash benchmarks/speed/gpu_check.sh            # on a machine with an NVIDIA GPU: under 5 minutes
#   bash benchmarks/speed/gpu_check.sh --dry-run  # the same logic on the CPU with tiny sizes (CI, seconds)
#
# 1. The CUDA tests (tests/test_torch_cuda.py and the CUDA test of tests/test_torch.py) with
#    LRFINDER_REQUIRE_CUDA=1, so that a missing GPU fails instead of skipping.
# 2. python -m benchmarks.speed.torch_gpu: wall time, peak accelerator memory and host syncs per step
#    against a bare loop; it prints the table for benchmarks/speed/torch.md and checks the design's promises.
#
# Needs torch with CUDA and pytest (no network). PYTHON picks the interpreter (default: python).
# Exit status: 0 when every part passed, 1 when a test or check failed, 2 when it cannot run here.
set -u -o pipefail
# from the repository root: python -m puts it on sys.path, so this checkout's lrfinder is imported
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}

dry_run=0
case "${1:-}" in
    "") ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,13p' "benchmarks/speed/gpu_check.sh" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "Error: unknown option '$1'; use --dry-run or nothing (see --help)" >&2; exit 2 ;;
esac

if ! "$PYTHON" -c "import torch, pytest" 2>/dev/null; then
    echo "Error: $PYTHON cannot import torch and pytest; install them (or set PYTHON=/path/to/python)" >&2
    exit 2
fi

status=0
if [ "$dry_run" = 1 ]; then
    echo "== dry run on the CPU: the CUDA tests must collect, the benchmark's logic must run =="
    "$PYTHON" -m pytest tests/test_torch_cuda.py --collect-only -q -p no:cacheprovider >/dev/null \
        || { echo "FAILED: tests/test_torch_cuda.py does not collect"; status=1; }
    "$PYTHON" -m benchmarks.speed.torch_gpu --device cpu --tiny --models mlp || status=1
    exit $status
fi

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "Error: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees no CUDA device;" \
         "run this on a machine with an NVIDIA GPU and a CUDA build of torch (or use --dry-run)" >&2
    exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

echo "== 1/2 CUDA tests =="
LRFINDER_REQUIRE_CUDA=1 timeout 130 "$PYTHON" -m pytest tests/test_torch_cuda.py tests/test_torch.py -k cuda \
    -q -p no:cacheprovider -rfEs || { echo "FAILED: the CUDA tests (exit $?)"; status=1; }

echo "== 2/2 benchmark on the GPU (paste the table into benchmarks/speed/torch.md) =="
timeout 140 "$PYTHON" -m benchmarks.speed.torch_gpu --device cuda || { echo "FAILED: the benchmark (exit $?)"; status=1; }

[ "$status" = 0 ] && echo "GPU check: all passed" || echo "GPU check: FAILED (see above)"
exit $status
