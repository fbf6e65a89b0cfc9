"""Efficiency: FLOPs (the paper's accounting and an exact one), latency, memory and throughput.

    python -m efficiency.flops paper        # the paper's efficiency table, reproduced
    python -m efficiency.flops exact        # what this package's prefill costs, by part
    python -m efficiency.latency --help     # time to first token, decode, memory, throughput

`efficiency.flops.prefill_flops(config, method, T)` is the accounting as a function.
"""
