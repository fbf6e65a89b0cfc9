#!/usr/bin/env bash
# ScienceQA-IMG: accuracy (scienceqa_img, exact_match).
# Model: LLaVA-OneVision, TOKENS per image (split between base crop and anyres_max_9 tile map) (default llava-hf/llava-onevision-qwen2-7b-ov-hf); prompts as lmms-eval's own model for it.
# Usage: sqa.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" onevision sqa "$@"
