"""What a measurement ran on: the one description of the machine, recorded beside every benchmark result.

python -m efficiency.hardware                   # this machine (CPU, and GPU 0 if there is one) as JSON
python -m efficiency.hardware --gpu-slug        # GPU 0's name for file names, e.g. h100-80gb-hbm3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NVIDIA_SMI_TIMEOUT_S = 10


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_driver() -> str | None:
    """The NVIDIA driver version as nvidia-smi reports it (one per machine); None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    try:
        found = subprocess.run(query, capture_output=True, text=True, check=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = found.stdout.split()
    return lines[0] if lines else None


def describe(device: torch.device | str) -> dict:
    """Device name, CPU, torch's thread count and the cores, library versions, GPU driver and the UTC time."""
    import torch  # here, not at the top: the command lines answer --help without loading torch
    import transformers

    device = torch.device(device)
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_usable_cores": usable_cores(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "gpu_driver": gpu_driver() if cuda else None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def machine_name(hardware: dict) -> str:
    """What a report's heading names as the machine of a `describe` record: the GPU, or on a CPU run the CPU."""
    return hardware["cpu"] if hardware["device"] == "cpu" else hardware["device"]


def usable_cores() -> int | None:
    """The cores this process may run on (a container or taskset can allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages: a busy machine makes CPU timings noisy, so they are recorded."""
    return list(os.getloadavg())


def gpu_slug(index: int = 0) -> str:
    """A GPU's name for file names: "NVIDIA H100 80GB HBM3" -> "h100-80gb-hbm3"."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(f"this torch ({torch.__version__}) sees no CUDA device")
    return torch.cuda.get_device_name(index).replace("NVIDIA ", "").replace(" ", "-").lower()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m efficiency.hardware", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu-slug", action="store_true", help="print only GPU 0's name for file names")
    args = parser.parse_args(argv)
    if args.gpu_slug:
        print(gpu_slug())
        return
    import torch

    print(json.dumps(describe("cuda" if torch.cuda.is_available() else "cpu"), indent=2))


if __name__ == "__main__":
    main()
