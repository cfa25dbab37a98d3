#!/usr/bin/env bash
# Every check that needs a GPU, in one run (a GPU machine is lent rarely and briefly):
#   1. tests/test_cuda.py: losses, gradients and training on CUDA equal the CPU's;
#   2. the CLI stages end to end with --device cuda (classifier, cache, SAE, meta-SAE, analysis, ViT);
#   3. the benchmark suite on cuda (ratios to floors; written as a `cuda` baseline beside the report);
#   4. TopK / BatchTopK step throughput at a larger, LLM-like size (d_in 768, 32k latents, batch 8192);
#   5. the TopK peer comparison on the GPU, where dictionary_learning's source is at .peers/ (optional: a
#      GPU machine may have no package index, so copy the installed package there first, e.g. from the venv
#      benchmarks/peers/compare_topk.py makes: cp -r /tmp/peers-venv/lib/python3*/site-packages/dictionary_learning .peers/).
# Usage: bash benchmarks/gpu_check.sh [OUT]   (OUT defaults to results/gpu; nothing else is written)
# Runs from a checkout without installing it (PYTHONPATH), with whatever torch the machine has.
set -uo pipefail
OUT=${1:-results/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
failed=()

step() {  # step NAME CMD...: run, time, and remember failures without stopping the other checks
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  if "$@"; then echo "   ok ($((SECONDS - start)) s)"; else echo "   FAILED ($((SECONDS - start)) s)"; failed+=("$name"); fi
}

cli() { "$PY" -m metasae.cli "$@"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"

step cuda-tests "$PY" -m pytest -q -p no:cacheprovider -o addopts= tests/test_cuda.py

W=$(mktemp -d)
step cli-train-classifier cli train-classifier --model mlp --train digits:train --test digits:test --epochs 5 \
  --seed 0 --device cuda --out "$W/model"
step cli-cache-acts cli cache-acts --model-dir "$W/model" --dataset digits:test --layer fc1 --seed 0 --device cuda \
  --out "$W/acts"
step cli-train-sae cli train-sae --acts "$W/acts" --architecture topk --width 256 --k 16 --epochs 30 \
  --batch-size 128 --seed 0 --device cuda --out "$W/sae/depth1"
step cli-train-meta-sae cli train-sae --parent "$W/sae/depth1" --mode decoder --depth 2 --architecture batchtopk \
  --width-factor 0.25 --width-min 8 --k 4 --steps 300 --batch-size 64 --seed 0 --device cuda --out "$W/sae/decoder/depth2"
step cli-analyse cli analyse --depth-dir "$W/sae/decoder/depth2" --device cuda --out "$W/analysis/decoder/depth2"
step cli-train-vit cli train-vit --train glyphs:train --test glyphs:test --steps 200 --seed 0 --device cuda \
  --out "$W/vit"
"$PY" - "$W" "$OUT/pipeline.json" <<'EOF'
import json, sys
from pathlib import Path
w, out = Path(sys.argv[1]), Path(sys.argv[2])
found = {str(p.relative_to(w)): json.loads(p.read_text()) for p in sorted(w.rglob("*.json"))
         if p.name in ("metrics.json", "summary.json")}
out.write_text(json.dumps(found, indent=1, default=str))
for name, record in found.items():
    keys = ("test_accuracy", "fvu", "l0", "dead_fraction", "status", "n_alive", "purity_mean")
    print(name, {k: record[k] for k in keys if k in record})
EOF

step bench-cuda cli bench --device cuda --repeat 3 --out "$OUT" --baseline "$OUT/baseline.json" --tolerance 0.5 \
  --update-baseline

step sae-step-large env BENCH_BATCH=8192 BENCH_D_IN=768 BENCH_D_SAE=32768 "$PY" -m pytest -q -p no:cacheprovider \
  -o addopts= benchmarks/test_bench_sae_step.py -k "topk" --benchmark-only --device cuda \
  --benchmark-json="$OUT/sae_step_large.json" --benchmark-columns=median,min,max

if [ -d .peers ]; then
  mkdir -p /tmp/stub/nnsight  # dictionary_learning's package __init__ imports nnsight for a buffer never used here
  echo "LanguageModel = None" > /tmp/stub/nnsight/__init__.py
  peers() { env PYTHONPATH="$PYTHONPATH:$PWD/.peers:/tmp/stub" "$PY" benchmarks/peers/compare_topk.py --inside \
    --install-errors '{"sae_lens": "not installed on the GPU machine (no registry there)"}' --device cuda "$@"; }
  step peers-cuda-default peers --out "$OUT/peers_cuda_default.json"
  step peers-cuda-chosen peers --encoder-init-scale 0.3 --balance-steps 300 --check-every 5 \
    --out "$OUT/peers_cuda_chosen.json"  # the CPU's choice (README, Speed)
  step peers-cuda-large peers --batch 4096 --d-sae 16384 --steps 300 --n-train 262144 --out "$OUT/peers_cuda_large.json"
fi

echo "failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
