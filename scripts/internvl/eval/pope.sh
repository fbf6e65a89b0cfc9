#!/usr/bin/env bash
# POPE: F1 averaged over the random, popular and adversarial splits (pope_paper).
# Model: InternVL3, TOKENS per 448-px tile (each of up to 12 tiles and the thumbnail keeps TOKENS of 256) (default OpenGVLab/InternVL3-8B-hf); prompts as lmms-eval's own model for it.
# Usage: pope.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" internvl pope "$@"
