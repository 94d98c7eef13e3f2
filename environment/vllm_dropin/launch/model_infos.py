"""vLLM's model-info cache, filled from the install so that a start with an empty cache_dir skips a
process.

Before it loads a model, vLLM inspects the architecture's class in a subprocess that imports vLLM
again, unless `$VLLM_CACHE_ROOT/modelinfos/` already holds that class's info for the installed
source. install.sh writes the info of every architecture the install's vLLM can import into the
venv (`SEED`), as vLLM itself writes it; each start copies it into cache_dir. vLLM checks every
file against its source's hash, so a file that does not match the vLLM running is only ignored.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("vllm_dropin")

FOLDER = "modelinfos"  # under VLLM_CACHE_ROOT, as vLLM names it
SEED = Path(sys.prefix) / "share" / "vllm-dropin" / "vllm-cache" / FOLDER  # install.sh writes it


def seed(vllm_cache_root: Path, seed_folder: Path = SEED) -> int:
    """The install's model infos into `vllm_cache_root`, each one missing or different there (the
    install's match the vLLM installed: a persistent cache_dir may hold an older vLLM's); how many
    were written. Each is written whole (replicas may share cache_dir). A write that fails is one
    warning: vLLM then inspects the model's class itself, as without an install's infos."""
    if not seed_folder.is_dir():
        return 0
    target = vllm_cache_root / FOLDER
    written = 0
    try:
        target.mkdir(parents=True, exist_ok=True)
        for info in sorted(seed_folder.glob("*.json")):
            text = info.read_bytes()
            present = target / info.name
            if present.is_file() and present.read_bytes() == text:
                continue
            with tempfile.NamedTemporaryFile(dir=target, prefix=f".{info.name}.", delete=False) as part:
                part.write(text)
            os.replace(part.name, present)
            written += 1
    except OSError as exc:
        log.warning("vLLM's model infos not copied into %s: %s", target, exc.strerror or exc)
    return written


def describe(seed_folder: Path = SEED) -> str:
    """For `check`: whether a first start inspects the model's class in a process of its own."""
    count = len(list(seed_folder.glob("*.json"))) if seed_folder.is_dir() else 0
    if count:
        return f"model class info: from the install ({count} files in {seed_folder}): not inspected at start"
    return (
        f"model class info: none in the install ({seed_folder}): the first start with this cache_dir inspects "
        "the model's class in a process that imports vLLM (cold)"
    )
