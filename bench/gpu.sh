#!/usr/bin/env bash
# Every GPU figure in one short run, for whoever has a GPU for a few minutes:
#   bash bench/gpu.sh [OUT_DIR]        -> OUT_DIR/bench_gpu.json and .log (default: bench_gpu_output/)
# Needs python3 with torch (CUDA), numpy, numba and OpenCV; no ROS, no bags, no venv required.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench_gpu_output}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
PYTHONUNBUFFERED=1 python3 bench/bench_gpu.py --json "$out/bench_gpu.json" "${@:2}" 2>&1 | tee "$out/bench_gpu.log"
