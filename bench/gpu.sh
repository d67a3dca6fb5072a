#!/usr/bin/env bash
# What only a GPU can measure (issue 16, item 5), in one script, under 8 minutes on one large GPU:
#   1. steps/s and peak memory of GradDiff / NPO / UNDIAL x AdamW / SophiaG, bf16, ~1B Llama from a config,
#      single device;
#   2. the same under DeepSpeed ZeRO-3 over every GPU present (accelerate launch, recipes/accelerate/zero3.yaml);
#   3. TOFU evaluation throughput of that model, and row-pool generation vs model.generate batches.
# Results: $OUT/train_single.json, train_zero3.json, eval.json and a table on stdout (bench/gpu.py documents them).
#
#   bash bench/gpu.sh                      # on a GPU machine
#   bash bench/gpu.sh --dry-run            # tiny model, synthetic data, 3 steps: the logic, on CPU too
#   OUT=/tmp/gpu PYTHON=python bash bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${OUT:-bench/results/gpu}
DRY=()
[ "${1:-}" = "--dry-run" ] && DRY=(--dry-run)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT"

NGPU=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
echo "== bench/gpu.sh: $NGPU GPU(s); output $OUT ${DRY[*]}"
if [ "$NGPU" = 0 ] && [ ${#DRY[@]} = 0 ]; then
  echo "no GPU here: run with --dry-run to check the logic on CPU" >&2
  exit 2
fi
START=$SECONDS

# 1. single device (~2 min on an H100/H200)
timeout 240 "$PYTHON" -m bench.gpu train --output_dir "$OUT" ${DRY[@]+"${DRY[@]}"} || echo "single-device runs failed or timed out" >&2

# 2. ZeRO-3 over the devices present (~3 min); on CPU (dry run): DeepSpeed's CPU accelerator, 2 processes, gloo
if [ "$NGPU" = 0 ]; then
  ZERO_ENV=(env DS_ACCELERATOR=cpu CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=1); NPROC=2; EXTRA=()
else
  ZERO_ENV=(env); NPROC=$NGPU; EXTRA=(--mixed_precision bf16)
fi
timeout 300 "${ZERO_ENV[@]}" "$PYTHON" -m accelerate.commands.launch --config_file recipes/accelerate/zero3.yaml --num_processes "$NPROC" \
  ${EXTRA[@]+"${EXTRA[@]}"} -m bench.gpu train --zero3 --output_dir "$OUT" ${DRY[@]+"${DRY[@]}"} || echo "ZeRO-3 runs failed or timed out" >&2

# 3. TOFU evaluation throughput (~1 min)
timeout 150 "$PYTHON" -m bench.gpu eval --output_dir "$OUT" ${DRY[@]+"${DRY[@]}"} || echo "evaluation failed or timed out" >&2

echo "== done in $((SECONDS - START)) s"
"$PYTHON" -m bench.gpu table --output_dir "$OUT"
