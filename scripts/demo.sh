#!/usr/bin/env bash
# Sets everything up, synthesizes a small DeepSeek-R1-Distill-Qwen-shaped model (random
# weights, real tokenizer and chat template) and generates from it.
#
#   scripts/demo.sh ["your prompt"]     (STRATA_DEMO_SHAPE=r1-qwen-1.5b for the real shape)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh build
SHAPE="${STRATA_DEMO_SHAPE:-tiny-qwen2}"
MODEL="build/demo-${SHAPE}-q8_0.gguf"
[ -f "$MODEL" ] || ./build/strata model synth --shape "$SHAPE" --type q8_0 --seed 1 --out "$MODEL"
./build/strata inspect "$MODEL" | grep -E "^GGUF|^model:" || true
./build/strata run --model "$MODEL" --prompt "${1:-Why is the sky blue?}" --chat \
  --max-tokens 64 --temperature 0.7 --seed 42
