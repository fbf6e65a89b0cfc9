#!/usr/bin/env bash
# MMBench dev-EN: local letter-match score + submission file for the MMBench server.
# Model: LLaVA-1.5 (default liuhaotian/llava-v1.5-7b).
# Usage: mmbench.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--batch-size N] [--dry-run] [--rerun]
#        (TOKENS 'full' = no pruning; RATIO '-' for methods without one; --help lists every option)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" v1_5 mmbench "$@"
