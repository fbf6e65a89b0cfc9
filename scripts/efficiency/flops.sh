#!/usr/bin/env bash
# FLOPs: the paper's efficiency table beside the reconstructed accounting, and the exact accounting of
# this package's prefill at LLaVA-1.5-7B and LLaVA-NeXT-7B (paper setting: 5 crops) shapes.
# Usage: flops.sh [OUT_DIR]      (default results/efficiency; writes OUT_DIR/flops.md and flops-<shape>.json)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=.venv/bin/python; [ -x "$python" ] || python=python
[ $# -le 1 ] || { echo "flops.sh: one argument at most (OUT_DIR), got $#: $*" >&2; exit 2; }
out=${1:-results/efficiency}
[ ! -e "$out" ] || [ -d "$out" ] || { echo "flops.sh: OUT_DIR $out is a file, not a folder" >&2; exit 2; }
for file in "$out/flops.md" "$out/flops-llava-1.5-7b.json" "$out/flops-llava-next-7b.json"; do
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
} > "$partial"
chmod 644 "$partial"
mv "$partial" "$out/flops.md"
echo "wrote $out/flops.md"
