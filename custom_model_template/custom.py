"""Custom model hook for the vLLM drop-in environment: fetch the model without a model hub.

The environment calls `load_model(code_dir)` once per container, before vLLM starts. When the
runtime parameter `artifact_uri` names a folder (a mounted volume, say), its content is copied
into `${CODE_DIR}/vllm/`, which vLLM then serves with hub access off. The copy goes to a
temporary folder first and is renamed into place, so a crash never leaves half a model; a
second call finds the folder filled and does nothing.
"""

import os
import shutil
import tempfile
from pathlib import Path

from datarobot_drum import RuntimeParameters

MODEL_DIR = "vllm"


def _artifact_uri():
    if not RuntimeParameters.has("artifact_uri"):
        return None
    return RuntimeParameters.get("artifact_uri") or None


def load_model(code_dir):
    target = Path(code_dir) / MODEL_DIR
    source = _artifact_uri()
    if source is None or (target.is_dir() and any(target.iterdir())):
        return None  # nothing to fetch, or fetched already
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"runtime parameter 'artifact_uri': {source} is not a folder")
    staging = Path(tempfile.mkdtemp(prefix=".vllm-fetch-", dir=code_dir))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        if target.is_dir():
            target.rmdir()  # an empty placeholder folder
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None
