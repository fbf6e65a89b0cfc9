#!/usr/bin/env bash
# MSVD-QA, GPT-judged (Video-LLaVA protocol); needs data/video/msvd_qa.jsonl and a judge key.
# Model: Video-LLaVA, TOKENS per frame (default LanguageBind/Video-LLaVA-7B-hf).
# Usage: msvd.sh TOKENS RATIO [METHOD] [--model PATH] [--gpus N] [--limit N] [--judge-model M] [--judge-endpoint URL]
#        [--judge-key-env VAR] [--dry-run] [--rerun]   (the key is read from $OPENAI_API_KEY by default, at judge time)
exec "$(dirname "${BASH_SOURCE[0]}")/../../launch.sh" video msvd "$@"
