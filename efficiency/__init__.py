"""Efficiency: FLOPs (the paper's accounting and an exact one), latency, memory and throughput.

    python -m efficiency.flops paper        # the paper's efficiency table, reproduced
    python -m efficiency.flops exact        # what this package's prefill costs, by part
    python -m efficiency.latency --help     # time to first token, decode, memory, throughput
    python -m efficiency.selection --help   # VisPruner's selection against the vision tower
    python -m efficiency.baselines --help   # every baseline where it does its work
    python -m efficiency.received_attention --help   # the signal of encoders without [CLS]
    python -m efficiency.hardware           # what a measurement runs on

`efficiency.flops.prefill_flops(config, method, T)` is the accounting as a function. Every timing goes
through `efficiency.timing.measure` (torch.utils.benchmark), every result records
`efficiency.hardware.describe()`, and every table is written by `efficiency.tables.markdown` (pandas).
"""
