"""DRUM workers load the adapter and the worker contract, never the planning code."""

import json
import os
import subprocess
import sys

from demo.running import REPO

ALLOWED = {"vllm_dropin", "vllm_dropin.contract", "vllm_dropin.health", "vllm_dropin.prompt_template"}


def test_adapter_imports_only_the_contract_of_ours():
    code = (
        "import json, sys; import vllm_dropin.drum.hooks; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vllm_dropin'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "environment")}  # as DRUM's workers get it
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    ours = set(json.loads(done.stdout.splitlines()[-1]))
    assert {m for m in ours if not m.startswith("vllm_dropin.drum")} == ALLOWED
