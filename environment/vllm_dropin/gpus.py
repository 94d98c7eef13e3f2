"""How many GPUs vLLM will see: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's list.

Counting `nvidia-smi -L | wc -l` (the platform's way) counts a MIG-partitioned GPU once for the
GPU line and again for each MIG line; CUDA sees the MIG instances, not the parent.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping


def count_visible(environ: Mapping[str, str], smi_listing: str | None) -> int:
    """GPUs a CUDA program started with `environ` sees, from CUDA_VISIBLE_DEVICES or `nvidia-smi -L`."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        count = 0
        for entry in listed.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry ("-1" hides all)
                break
            count += 1
        return count
    if not smi_listing:
        return 0
    gpu_migs: list[int] = []  # MIG instances of each GPU line
    for line in smi_listing.splitlines():
        if line.startswith("GPU "):
            gpu_migs.append(0)
        elif line.strip().startswith("MIG ") and gpu_migs:
            gpu_migs[-1] += 1
    return sum(migs or 1 for migs in gpu_migs)


def nvidia_smi_listing() -> str | None:
    """`nvidia-smi -L`, or None where there is no NVIDIA driver (CPU hosts)."""
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def visible(environ: Mapping[str, str]) -> int:
    """The count for this host (nvidia-smi is asked only when CUDA_VISIBLE_DEVICES is unset)."""
    listing = None if "CUDA_VISIBLE_DEVICES" in environ else nvidia_smi_listing()
    return count_visible(environ, listing)
