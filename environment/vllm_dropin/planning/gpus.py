"""The GPUs vLLM will see, and how much memory each has: CUDA_VISIBLE_DEVICES when set, else
nvidia-smi's list.

Counting `nvidia-smi -L | wc -l` (the platform's way) counts a MIG-partitioned GPU once for the
GPU line and again for each MIG line; CUDA sees the MIG instances, not the parent. A MIG
instance's memory is in its profile name (`3g.40gb`); a whole GPU's comes from
`nvidia-smi --query-gpu=index,memory.total`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

_GPU_LINE = re.compile(r"^GPU (\d+): .*\(UUID: ([^)]+)\)")
_MIG_LINE = re.compile(r"^\s*MIG (\S+)\s+Device\s+\d+: \(UUID: ([^)]+)\)")
_MIG_MEMORY = re.compile(r"\.(\d+)gb$")


@dataclass(frozen=True)
class Device:
    ids: tuple[str, ...]  # what CUDA_VISIBLE_DEVICES may call it: index, UUID
    memory_gib: float | None


@dataclass(frozen=True)
class GpuInventory:
    count: int
    memory_gib: float | None  # of the smallest visible GPU; None when unknown

    def describe(self) -> str:
        if self.count == 0:
            return "no GPU"
        memory = f" of {self.memory_gib:g} GiB" if self.memory_gib else " (memory unknown)"
        return f"{self.count} GPU{'s' if self.count > 1 else ''}{memory}"


def _devices(smi_listing: str | None, memory_csv: str | None) -> list[Device]:
    """CUDA's devices in order: whole GPUs, or the MIG instances of a partitioned GPU."""
    memory = {}
    for row in (memory_csv or "").splitlines():
        index, _, mib = row.partition(",")
        if index.strip().isdigit() and mib.strip().replace(".", "", 1).isdigit():
            memory[index.strip()] = float(mib) / 1024
    gpus: list[tuple[Device, list[Device]]] = []
    for line in (smi_listing or "").splitlines():
        if match := _GPU_LINE.match(line):
            index, uuid = match.groups()
            gpus.append((Device((index, uuid), memory.get(index)), []))
        elif (match := _MIG_LINE.match(line)) and gpus:
            profile, uuid = match.groups()
            gib = _MIG_MEMORY.search(profile)
            gpus[-1][1].append(Device((uuid,), float(gib.group(1)) if gib else None))
    return [device for gpu, migs in gpus for device in (migs or [gpu])]


def inventory(environ: Mapping[str, str], smi_listing: str | None, memory_csv: str | None = None) -> GpuInventory:
    """The GPUs a CUDA program started with `environ` sees."""
    devices = _devices(smi_listing, memory_csv)
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        by_id = {i: d for d in devices for i in d.ids}
        by_position = dict(enumerate(devices))
        chosen: list[Device | None] = []
        for entry in listed.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry ("-1" hides all)
                break
            chosen.append(by_id.get(entry) or (by_position.get(int(entry)) if entry.isdigit() else None))
    else:
        chosen = list(devices)
    known = [d.memory_gib for d in chosen if d is not None and d.memory_gib]
    return GpuInventory(len(chosen), min(known) if chosen and len(known) == len(chosen) else None)


def _smi(*args: str) -> str | None:
    """nvidia-smi's output, or None where there is no NVIDIA driver (CPU hosts)."""
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def visible(environ: Mapping[str, str]) -> GpuInventory:
    """The inventory of this host (nvidia-smi is not asked when CUDA_VISIBLE_DEVICES hides every GPU)."""
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return GpuInventory(0, None)
    listing = _smi("-L")
    if listing is None:
        return inventory(environ, None)
    return inventory(environ, listing, _smi("--query-gpu=index,memory.total", "--format=csv,noheader,nounits"))
