"""Evaluation: the lmms-eval plugin (`eval.plugin`), paper-protocol task variants (`eval/tasks/`),
the benchmark launcher behind `scripts/*/eval/*.sh` (`eval.launch`), the Video-LLaVA GPT judge
(`eval.judge`) and the paper-layout tables (`python -m eval.tables RESULTS_DIR`)."""
