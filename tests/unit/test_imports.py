"""Imports go one way: each stage imports only the stages before it; DRUM's workers load the
worker contract and never the planning code."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from demo.running import REPO

PACKAGE = REPO / "environment" / "vllm_dropin"
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


STAGES = ("config", "model", "planning", "launch", "drum")  # the launch's order: each imports only those before it
SHARED = {"errors", "contract", "events", "logs", "health", "prompt_template"}  # leaves every stage may import


def _ours(path: Path) -> set[str]:
    """The vllm_dropin modules a file imports (absolute or relative), as dotted names under vllm_dropin."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])]
                )
            found |= {f"{base}.{alias.name}" for alias in node.names} | {base}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name.removeprefix("vllm_dropin.") for name in found if name.startswith("vllm_dropin.")}


def test_stages_import_only_the_stages_before_them():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2 or parts[0] not in STAGES:
            continue
        allowed = set(STAGES[: STAGES.index(parts[0]) + 1]) | SHARED
        if parts[0] == "launch":  # the supervisor runs the stages before it as one: the pipeline
            allowed.add("pipeline")
        if parts[0] == "drum":  # DRUM's workers: nothing of the planning code
            allowed = {"drum"} | SHARED - {"errors", "events", "logs"}
        for name in _ours(path):
            if name.split(".")[0] not in allowed:
                wrong.append(f"{'/'.join(parts)} imports vllm_dropin.{name}")
    assert wrong == []
