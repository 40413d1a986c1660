#!/usr/bin/env bash
# The GPU checks of prfaas, as one script for a lent CUDA machine (see README "prfaas on vLLM"):
#   1. our engine's tests on CUDA (the engine picks CUDA when torch sees it);
#   2. the vLLM backend on CUDA: vLLM 0.33.0 (CUDA build) in its own venv, then the prfaas-connector P/D
#      end-to-end tests (token-identical to colocated, no recompute, corrupt/missing transfers) and the NIXL
#      comparison on loopback.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]     (OUT_DIR default: ./gpu-check; logs and JSON land there)
# Everything it runs also runs on CPU in CI; this only repeats it where a GPU is present.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
export PRFAAS_VLLM_VENV="${PRFAAS_VLLM_VENV:-$PWD/.vllm-cuda-venv}" PRFAAS_REQUIRE_VLLM=1 PRFAAS_VLLM_GPU_MEM_FRACTION=0.3
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || { echo "no GPU visible (nvidia-smi failed)"; exit 2; }
status=0
python -m pip install -q -e '.[all,dev]' > "$OUT/install.log" 2>&1 || { echo "install failed"; exit 2; }
python -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))" | tee "$OUT/torch.txt"
timeout 900 python -m pytest -q tests/engine -x > "$OUT/engine-tests.log" 2>&1 || status=1
tail -1 "$OUT/engine-tests.log"
timeout 1200 prfaas vllm install --cuda --nixl > "$OUT/vllm-install.log" 2>&1 || { echo "vllm install failed"; exit 1; }
timeout 1800 python -m pytest -q tests/integrations -x -k "llama or qwen3" > "$OUT/vllm-pd-tests.log" 2>&1 || status=1
tail -1 "$OUT/vllm-pd-tests.log"
timeout 1500 python benchmarks/bench_vllm.py --runs 3 --no-sites --prompt-tokens 8192 --out "$OUT/bench_vllm.json" \
  > "$OUT/bench_vllm.log" 2>&1 || status=1
tail -3 "$OUT/bench_vllm.log"
exit $status
