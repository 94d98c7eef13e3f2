"""Peak memory of a server's processes (VmHWM: the high-water mark of resident memory)."""

from __future__ import annotations

from pathlib import Path

import psutil


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def drum_workers(leader: int) -> list[int]:
    """gunicorn workers among the descendants of a `drum server` process."""
    return [
        p.pid for p in psutil.Process(leader).children(recursive=True) if "gunicorn: worker" in " ".join(p.cmdline())
    ]
