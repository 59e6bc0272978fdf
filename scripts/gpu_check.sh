#!/usr/bin/env bash
# The GPU path in one run (<= 8 minutes on an H100/H200): CUDA tests, the training benchmark on CUDA, a 3-minute
# training on the full corpus, its evaluation, and a 1-rank NCCL run under torchrun.
#
# For a machine with torch + CUDA, numpy, matplotlib, tqdm but no network and no fastNLP / OpenCC / pypinyin:
# prepare the corpus here first (python dataUtil.py prepare) and carry data/processed (and data/raw, whose file
# stamps key the cache) along. Figures go to $OUT (default: runs/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
mkdir -p "$OUT"
export PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
export PYTHONUNBUFFERED=1
# pytest may be missing there: carry its wheels in .whl (pytest, pluggy, iniconfig, packaging; see docs/gpu.md)
if ! python -c "import pytest" 2>/dev/null && [ -d .whl ]; then
  python -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
# 1. the CUDA tests and the model tests that need no fastNLP/OpenCC/pypinyin (about a minute)
timeout 120 python -m pytest -q tests/test_cuda.py tests/test_fused_backward.py tests/test_bf16.py -p no:cacheprovider 2>&1 | tail -5 \
  | tee "$OUT/tests.txt"
# 2. training speed: backends and precisions alternated on the same real batches (about a minute)
timeout 150 python benchmark.py train --device cuda --steps 40 \
  --variants fused-bf16,fused-fp32,cudnn-bf16,nnlstm-bf16,nnlstm-fp32 2>&1 \
  | tee "$OUT/benchmark.txt"
# 3. a 3-minute training on the full corpus, then its perplexity (about 4 minutes)
timeout 260 python main.py train --device cuda --max-minutes 3 --ckpt-dir "$OUT/run" --overwrite --gen-every 0 \
  --pp-every 200 2>&1 | grep -v "it/s\|step/s" | tail -25 | tee "$OUT/train.txt"
timeout 60 python main.py evaluate --ckpt "$OUT/run/best.pt" --device cuda 2>&1 | tee "$OUT/evaluate.txt"
# 4. torchrun with one NCCL rank (about half a minute)
timeout 90 python -m torch.distributed.run --standalone --nproc_per_node 1 main.py train --device cuda \
  --max-steps 100 --pp-every 100 --gen-every 0 --ckpt-dir "$OUT/ddp" --overwrite 2>&1 | tail -3 | tee "$OUT/ddp.txt"
