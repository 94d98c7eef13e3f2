"""Where a process's time goes: py-spy's raw stacks recorded during a run, summarised per function,
per package and per role (DRUM workers, vLLM's API servers, engine core ...)."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path


def record(roles: dict[int, str], seconds: int, out: Path, rate: int = 100) -> list[subprocess.Popen]:
    """py-spy on each process for `seconds`: raw stacks into out/ROLE-PID.txt."""
    if roles:
        out.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
    argv = [py_spy, "record", "--duration", str(seconds), "--rate", str(rate), "--format", "raw", "--nonblocking"]
    return [
        subprocess.Popen(
            [*argv, "--pid", str(pid), "--output", str(out / f"{role}-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, role in roles.items()
    ]


def summary(raws: list[Path], top: int = 15) -> str:
    """Own samples per function and per source file (the last frame of each stack) from py-spy's
    collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    total = 0
    for line in (line for raw in raws if raw.exists() for line in raw.read_text().splitlines()):
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # a frame's text broke the line (py-spy prints some values with newlines)
        leaf = stack.split(";")[-1]
        total += int(count)
        name, _, where = leaf.partition(" (")
        path = where.rsplit(":", 1)[0]
        own[f"{name} ({path.rsplit('/', 1)[-1]})"] += int(count)
        files["/".join(path.split("/site-packages/")[-1].split("/")[:2])] += int(count)
    total = total or 1
    by_function = "\n".join(f"{100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top))
    by_file = "\n".join(f"{100 * n / total:5.1f} %  {name}" for name, n in files.most_common(top))
    return f"{total} samples; own time per function:\n{by_function}\nper package/module:\n{by_file}"


def by_role(out: Path) -> str:
    """`summary` of the raw stacks in `out`, one per role (API servers together, ...)."""
    kinds: dict[str, list[Path]] = collections.defaultdict(list)
    for raw in sorted(out.glob("*.txt")):
        kinds[re.sub(r"[_-]?\d+$", "", raw.stem.rsplit("-", 1)[0])].append(raw)
    return "\n".join(f"{kind} ({len(raws)} processes): {summary(raws)}" for kind, raws in kinds.items())
