"""A server's processes: finding them in its tree (DRUM's workers, vLLM's roles) and their peak memory
(VmHWM: the high-water mark of resident memory)."""

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


def vllm_processes(leader: int) -> dict[int, str]:
    """vLLM's processes among the descendants of `leader`, by role: the entrypoint (the API server
    when there is one), API servers, engine cores and workers (vLLM names them VLLM::ROLE_N)."""
    roles = {}
    for p in psutil.Process(leader).children(recursive=True):
        name = p.name()
        if name.startswith("VLLM::"):
            roles[p.pid] = name.removeprefix("VLLM::")
        elif "vllm_dropin.launch.vllm_entry" in " ".join(p.cmdline()):
            roles[p.pid] = "vllm_entry"
    return roles


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) the process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system
