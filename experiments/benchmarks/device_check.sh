#!/usr/bin/env bash
# One accelerator check, within 5 minutes on one H100/H200; JSON to $OUT (else ./device_check_out).
#
#   bash experiments/benchmarks/device_check.sh            # on the GPU machine (repo root)
#   SMALL=1 PYTHON=.venv/bin/python bash experiments/benchmarks/device_check.sh   # CPU dry run
#
# Sections (experiments/benchmarks/device_check.py): encoder parity with transformers on the
# device; BERT-base pre-training step f32/bf16 at lengths 128 and 512 (tokens/s, MFU vs the
# chip's dense bf16 peak); the fine-tuning step; predict throughput; annotate end to end vs
# transformers' token-classification pipeline on the same GPU. The GPU machine has no
# internet, so nothing is installed: its image's python3 has jax (CUDA), flax, optax, torch
# and transformers, which is all the check imports (no TensorFlow, no ml_collections).
# Results are rewritten after each section, so a timeout still leaves what was measured.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR="${OUT:-./device_check_out}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
# Leave room for torch (parity runs its reference on the CPU, but CUDA init takes some).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.85}"
ARGS=(--out="$OUT_DIR/device_check.json")
LIMIT=290  # hard limit; the python side skips sections after --budget_s (270 s by default)
if [[ -n "${SMALL:-}" ]]; then  # toy sizes on the CPU: no time limit that matters
  ARGS+=(--small --budget_s=3000)
  LIMIT=3600
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
fi
{ date -u; uname -a; nvidia-smi 2>&1 || echo "no nvidia-smi"; } > "$OUT_DIR/machine.txt"
timeout "$LIMIT" "$PY" -m experiments.benchmarks.device_check "${ARGS[@]}" "$@" 2>&1 \
  | grep -v -e "cuInit" -e "cudart_stub" | tee "$OUT_DIR/device_check.log"
rc=${PIPESTATUS[0]}
echo "device_check exit status $rc; results in $OUT_DIR/device_check.json"
exit "$rc"
