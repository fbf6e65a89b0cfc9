#!/usr/bin/env bash
# FLOPs: the paper's efficiency table beside the reconstructed accounting, and the exact accounting of
# this package's prefill at LLaVA-1.5-7B and LLaVA-NeXT-7B (paper setting: 5 crops) shapes, and at the
# real shapes of the other families (efficiency/flops_presets.py: Qwen2.5-VL-7B, InternVL3-8B,
# LLaVA-OneVision-7B, Qwen3-VL-8B, Gemma-3-4B, SmolVLM-Instruct), each with one image.
# Usage: flops.sh [OUT_DIR]      (default results/efficiency; writes OUT_DIR/flops.md and flops-<name>.json)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=.venv/bin/python; [ -x "$python" ] || python=python
[ $# -le 1 ] || { echo "flops.sh: one argument at most (OUT_DIR), got $#: $*" >&2; exit 2; }
out=${1:-results/efficiency}
[ ! -e "$out" ] || [ -d "$out" ] || { echo "flops.sh: OUT_DIR $out is a file, not a folder" >&2; exit 2; }
outputs=()
models=(qwen2.5-vl-7b internvl3-8b llava-onevision-7b qwen3-vl-8b gemma-3-4b smolvlm-instruct)
for name in llava-1.5-7b llava-next-7b "${models[@]}"; do outputs+=("$out/flops-$name.json"); done
for file in "$out/flops.md" "${outputs[@]}"; do
  [ -e "$file" ] && { echo "flops.sh: $file exists; remove it or choose another OUT_DIR" >&2; exit 1; }
done
mkdir -p "$out"
partial=$(mktemp "$out/.flops.md.XXXXXX")  # flops.md appears whole or not at all
trap 'rm -f "$partial"' EXIT
{
  echo "# FLOPs"; echo
  echo "Command: \`bash scripts/efficiency/flops.sh\` (pure arithmetic from the model configs; no hardware involved)."; echo
  echo "## The paper's accounting"; echo
  "$python" -m efficiency.flops paper
  for shape in llava-1.5-7b llava-next-7b; do
    echo; echo "## Exact accounting, $shape (per prompt: POPE-shaped, 64 text tokens; T per image/crop)"; echo
    "$python" -m efficiency.flops exact --shape "$shape" --methods none vispruner fastv visionzip random \
      --json "$out/flops-$shape.json" | grep -v '^wrote '
  done
  for model in "${models[@]}"; do
    echo; echo "## Exact accounting, $model (per prompt: POPE-shaped, 64 text tokens; T per image, per tile or crop for InternVL and SmolVLM)"; echo
    "$python" -m efficiency.flops exact --model "$model" --methods none vispruner fastv --tokens 128 64 32 \
      --json "$out/flops-$model.json" | grep -v '^wrote '
  done
} > "$partial"
chmod 644 "$partial"
mv "$partial" "$out/flops.md"
echo "wrote $out/flops.md"
