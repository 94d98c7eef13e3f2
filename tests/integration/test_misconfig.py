"""Misconfiguration suite: the mistakes people make in their first hour, each answered in one true
line with its exit code, fast.

Table-driven: each case sets runtime parameters, engine_config.json, the model folder or the
environment, runs `serve` (the image's start_server.sh) or `check`, and states the exit code,
words the ERROR line must hold, and the most seconds it may take (generous: this is a 2-core CI
host; the measured figures are what `make reliability` prints). For `serve`, the platform event
carries the same line, and the process is gone within 5 s of that line.
Figures: `make reliability` (this module as a script prints the table).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from demo.running import REPO, RunningEnvironment, runtime_param_env
from tests.helpers import BESIDE_CHECK_HOOK, CPU_ENGINE_ARGS, ENDLESS_HOOK
from vllm_dropin.errors import ExitCode

pytestmark = pytest.mark.integration

TINY = "<tiny>"  # stands for the tiny model's folder in a case's parameters
TINY_ARCHIVE = "<tiny.tar>"  # stands for a tar of the tiny model's folder (artifact_uri: fetched, unpacked)
BUSY = "<busy>"  # stands for an address another process listens on, in a case's environment
STOP_AFTER_ERROR_S = 5.0
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ERROR vllm_dropin: (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    name: str
    command: str  # "serve" or "check"
    exit_code: int
    words: tuple[str, ...]
    max_s: float = 30.0
    params: dict = field(default_factory=lambda: {"model": TINY})
    engine: list[str] | None = field(default_factory=lambda: list(CPU_ENGINE_ARGS))
    engine_text: str | None = None  # engine_config.json as raw text (overrides `engine`)
    model: str = "tiny"  # tiny | no-config | no-tokenizer: what the tiny model's folder holds
    custom_py: str | None = None
    env: dict = field(default_factory=dict)
    values_file: str | None = None  # YAML given as --runtime-params-file (with the template's metadata)
    child_tail: bool = True  # exit code STARTUP: the failed child's log tail is in the log


HUB = {"model": "org/some-model"}
S3_KEYS = {"credentialType": "s3", "awsAccessKeyId": "key-id", "awsSecretAccessKey": "MisconfigSecretKey0123"}
CASES = [
    # runtime parameters
    Case("numeric payload is text", "serve", 2, ("'temperature': payload 'hot' is text; it needs a number",),
         params={"model": TINY, "temperature": "hot"}),
    Case("number below its bound", "serve", 2, ("'max_tokens': must be >= 1, got 0",),
         params={"model": TINY, "max_tokens": 0}),
    Case("fraction above 1", "serve", 2, ("'gpu_memory_utilization': must be > 0 and <= 1, got 1.5",),
         params={"model": TINY, "gpu_memory_utilization": 1.5}),
    Case("choice not offered", "serve", 2, ("'row_errors': payload 'ignore' is not one of fail, column",),
         params={"model": TINY, "row_errors": "ignore"}),
    Case("boolean given as text", "serve", 2, ("'trust_remote_code': payload 'yes' is text; it needs true or false",),
         params={"model": TINY, "trust_remote_code": "yes"}),
    Case("env value is not JSON", "serve", 2, ("env MLOPS_RUNTIME_PARAM_max_tokens is not JSON",),
         env={"MLOPS_RUNTIME_PARAM_max_tokens": "{max_tokens: 256}"}),
    Case("env value is a bare value", "serve", 2, ('is not of the form {"type": "numeric", "payload": ...}',),
         env={"MLOPS_RUNTIME_PARAM_max_tokens": "256"}),
    Case("credential without token", "serve", 2, ("'HuggingFaceToken': expected an api_token credential",),
         params={"model": TINY, "HuggingFaceToken": {"credentialType": "api_token"}}),
    Case("misspelt parameter name", "check", 2, ("'max_tokenz' is not declared", "did you mean 'max_tokens'?"),
         params={"model": TINY, "max_tokenz": 5}),
    Case("values file: wrong type", "check", 2, ("runtime params file", "'temperature': payload 'hot' is text"),
         params={}, values_file="model: <tiny>\ntemperature: hot\n"),
    Case("values file: misspelt name", "check", 2, ("'max_tokenz' is not declared", "did you mean 'max_tokens'?"),
         params={}, values_file="model: <tiny>\nmax_tokenz: 5\n"),
    Case("n=2 with greedy temperature", "serve", 2, ("'n' = 2, 'temperature' = 0.0", "n must be 1 when using greedy"),
         params={"model": TINY, "n": 2, "temperature": 0}),
    Case("n=2 with greedy, in check", "check", 2, ("'n' = 2, 'temperature' = 0.0", "conflict"),
         params={"model": TINY, "n": 2, "temperature": 0}),
    # engine_config.json
    Case("engine_config not JSON", "serve", 2, ("engine_config.json: invalid JSON at line 1",),
         engine_text="{args: [}"),
    Case("engine_config args not a list", "serve", 2, ("$.args: expected type array",),
         engine_text='{"args": "--enforce-eager"}'),
    Case("unknown vLLM flag", "serve", 2, ("unknown vLLM flag --max-modle-len (did you mean --max-model-len?)",),
         engine=["--max-modle-len", "512"]),
    Case("flag the environment owns", "serve", 2, ("--port cannot be set",), engine=["--port", "9000"]),
    Case("value without a flag", "serve", 2, ("stray value 'some/model' is not a flag",), engine=["some/model"]),
    Case("more GPUs than visible", "check", 2, ("needs 4 GPUs but 2 are visible",), engine=["-tp", "4"],
         env={"CUDA_VISIBLE_DEVICES": "0,1"}),
    # the model
    Case("no model at all", "serve", 2, ("no model to serve: set runtime parameter 'model'",), params={}),
    Case("model path that does not exist", "serve", 2,
         ("runtime parameter 'model': no such folder /models/llama-3-8b-instruct",),
         params={"model": "/models/llama-3-8b-instruct"}),
    Case("folder without config.json", "serve", 2, ("has no config.json",), model="no-config"),
    Case("folder without tokenizer", "serve", 2, ("has no tokenizer files",), model="no-tokenizer"),
    Case("context longer than the model", "serve", 2, ("'max_model_len' is 100000 but the model allows at most 2048",),
         params={"model": TINY, "max_model_len": 100000}, engine=["--dtype", "float32", "--enforce-eager"]),
    Case("hub unreachable (air-gapped)", "serve", 2, ("comes from the Hugging Face hub", "cannot be reached"),
         params=HUB, env={"HF_ENDPOINT": "http://127.0.0.1:9"}),
    Case("hub offline flag set", "serve", 2, ("HF_HUB_OFFLINE is set",), params=HUB, env={"HF_HUB_OFFLINE": "1"}),
    Case("code dir missing", "check", 2, ("is not a folder (set CODE_DIR or --code-dir)",), model="missing"),
    # artifact_uri
    Case("artifact_uri of an unknown scheme", "serve", 2, ("'artifact_uri': unsupported scheme 'ftp://'",),
         params={"artifact_uri": "ftp://files.corp/llama"}),
    Case("artifact credential of another store", "serve", 2,
         ("'artifact_credential' is a 'azure' credential; s3://models/llama needs a 's3' one",),
         params={"artifact_uri": "s3://models/llama", "artifact_credential": S3_KEYS | {"credentialType": "azure"}}),
    Case("artifact folder missing", "serve", 5, ("artifact_uri /mnt/models/llama: no such folder",),
         params={"artifact_uri": "/mnt/models/llama"}),
    Case("artifact store unreachable", "serve", 5,
         ("artifact_uri s3://models/llama: cannot read from http://127.0.0.1:9: EndpointConnectionError",),
         params={"artifact_uri": "s3://models/llama", "artifact_endpoint_url": "http://127.0.0.1:9",
                 "artifact_credential": S3_KEYS}),
    Case("unknown vLLM flag and the store unreachable: the flag first", "serve", 2,
         ("unknown vLLM flag --max-modle-len (did you mean --max-model-len?)",), engine=["--max-modle-len", "512"],
         params={"artifact_uri": "s3://models/llama", "artifact_endpoint_url": "http://127.0.0.1:9",
                 "artifact_credential": S3_KEYS}),
    Case("unknown vLLM flag, the model fetched before the check ends: vLLM's parser still says it", "serve", 2,
         ("unknown vLLM flag --max-modle-len (did you mean --max-model-len?)",), engine=["--max-modle-len", "512"],
         params={"artifact_uri": TINY_ARCHIVE}),
    Case("artifact store unreachable (check)", "check", 5, ("cannot read from http://127.0.0.1:9",),
         params={"artifact_uri": "s3://models/llama", "artifact_endpoint_url": "http://127.0.0.1:9",
                 "artifact_credential": S3_KEYS}),
    # the model's hook
    Case("custom.py does not import", "serve", 3, ("importing", "custom.py failed"), custom_py="def load_model(:\n"),
    Case("load_model raises", "serve", 3, ("load_model in", "raised RuntimeError"),
         custom_py="def load_model(code_dir):\n    raise RuntimeError('bucket unreachable')\n"),
    Case("load_model raises while the flag check runs: its error, the check not waited for", "serve", 3,
         ("load_model in", "raised RuntimeError('ran beside the flag check')"), custom_py=BESIDE_CHECK_HOOK),
    Case("unknown vLLM flag while load_model runs on: the flag, the hook left", "serve", 2,
         ("unknown vLLM flag --max-modle-len (did you mean --max-model-len?)",), engine=["--max-modle-len", "512"],
         custom_py=ENDLESS_HOOK),
    # launch
    Case("cache_dir not writable", "serve", 2, ("runtime parameter 'cache_dir': cannot create",),
         params={"model": TINY, "cache_dir": "/proc/vllm-cache"}),
    Case("vLLM's Python cannot run it", "check", 4, ("checking vLLM's arguments in vLLM's Python failed",),
         env={"DROPIN_VLLM_PYTHON": "/bin/false"}),
    Case("DRUM's address in use", "serve", 4, ("DRUM's address", "another process listens there: stop it"),
         env={"ADDRESS": BUSY}, child_tail=False),
    Case("startup timeout", "serve", 4,
         ("vLLM was not healthy after 3 s (runtime parameter 'startup_timeout_seconds')",),
         params={"model": TINY, "startup_timeout_seconds": 3}),
    Case("vLLM: no memory for the KV cache", "serve", 4,
         ("vLLM exited with code 1 during startup: ValueError: No available memory for the cache blocks",
          "→ not enough accelerator memory"), max_s=120, engine=[*CPU_ENGINE_ARGS, "--num-gpu-blocks-override", "1"]),
    Case("vLLM: context over the model's, by flag", "serve", 4,
         ("vLLM exited with code 1 during startup: ValidationError", "greater than the derived max_model_len",
          "→ the context is longer than the model"), max_s=120,
         engine=["--dtype", "float32", "--enforce-eager", "--max-model-len", "100000"]),
]  # fmt: skip


@dataclass
class Outcome:
    code: int
    line: str  # the last ERROR line of ours
    seconds: float  # start to exit
    stop_s: float | None  # ERROR line to exit (serve)
    output: str


def _folder(case: Case, root: Path, tiny: Path) -> Path:
    folder = root / "model-folder"
    if case.model == "missing":
        return folder
    folder.mkdir(parents=True)
    if case.values_file is not None:
        shutil.copy(REPO / "custom_model_template" / "model-metadata.yaml", folder)
    if case.engine_text is not None:
        (folder / "engine_config.json").write_text(case.engine_text)
    elif case.engine is not None:
        (folder / "engine_config.json").write_text(json.dumps({"args": case.engine}))
    if case.custom_py is not None:
        (folder / "custom.py").write_text(case.custom_py)
    return folder


def _model(case: Case, root: Path, tiny: Path) -> Path:
    if case.model in ("tiny", "missing"):
        return tiny
    copy = root / "model"
    shutil.copytree(tiny, copy)
    removed = ("config.json",) if case.model == "no-config" else ("tokenizer.json", "tokenizer_config.json")
    for name in removed:
        (copy / name).unlink()
    return copy


def _listening(stack: ExitStack) -> str:
    """The address of a socket that listens until the case ends."""
    busy = stack.enter_context(socket.socket())
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    return f"127.0.0.1:{busy.getsockname()[1]}"


def run_case(case: Case, root: Path, tiny: Path) -> Outcome:
    with ExitStack() as stack:
        env = {k: (_listening(stack) if v == BUSY else v) for k, v in case.env.items()}
        return _run_case(case, root, tiny, env)


def _run_case(case: Case, root: Path, tiny: Path, case_env: dict[str, str]) -> Outcome:
    model = str(_model(case, root, tiny))
    folder = _folder(case, root, tiny)
    placeholders = {TINY: lambda: model, TINY_ARCHIVE: lambda: shutil.make_archive(str(root / "tiny"), "tar", model)}
    params = {k: placeholders[v]() if isinstance(v, str) and v in placeholders else v for k, v in case.params.items()}
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    env = {**base, **runtime_param_env(params), "VLLM_CPU_KVCACHE_SPACE": "1", **case_env}
    args = []
    if case.values_file is not None:
        values = root / "values.yaml"
        values.write_text(case.values_file.replace(TINY, model))
        args = ["--runtime-params-file", str(values)]
    started = time.monotonic()
    if case.command == "check":
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "environment"), env.get("PYTHONPATH", "")])
        argv = [sys.executable, "-m", "vllm_dropin", "check", "--code-dir", str(folder), *args]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        output, code, exited_at = done.stdout + done.stderr, done.returncode, datetime.now()
    else:
        service = RunningEnvironment(folder, root / "environment.log", env=env, args=args)
        code = service.wait_exit(600)
        exited_at = datetime.now()
        output = service.log()
    seconds = time.monotonic() - started
    errors = LOG_TIME.findall(output)
    line = errors[-1][1] if errors else ""
    stop_s = None
    if errors and case.command == "serve":
        stop_s = (exited_at - datetime.strptime(errors[-1][0], "%Y-%m-%d %H:%M:%S,%f")).total_seconds()
    return Outcome(code, line, seconds, stop_s, output)


def check_outcome(case: Case, outcome: Outcome) -> None:
    assert outcome.code == case.exit_code, (outcome.code, outcome.output[-3000:])
    for words in case.words:
        assert words in outcome.line, (words, outcome.line, outcome.output[-3000:])
    assert "Traceback" not in outcome.line
    assert S3_KEYS["awsSecretAccessKey"] not in outcome.output
    if case.command == "serve":
        assert f"deployment event: Deployment failed: {outcome.line}\n" in outcome.output
        assert outcome.stop_s is not None and outcome.stop_s <= STOP_AFTER_ERROR_S, outcome.stop_s
    if case.command == "serve" and case.exit_code == ExitCode.STARTUP and case.child_tail:  # in the log, not the event
        assert "INFO vllm_dropin: last log lines of the failed process:" in outcome.output
    assert outcome.seconds <= case.max_s, outcome.seconds


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_misconfiguration_is_one_true_line(case, tmp_path, tiny):
    check_outcome(case, run_case(case, tmp_path, tiny))


def test_the_suite_covers_at_least_25_kinds():
    assert len({c.name for c in CASES}) >= 25


def main() -> None:
    from demo.tiny_model import build_model

    work = Path(tempfile.mkdtemp(prefix="misconfig-"))
    tiny = build_model(work / "tiny")
    print(f"{'case':<40} {'cmd':<6} {'exit':>4} {'want':>4} {'s':>6} {'stop s':>6}  line")
    failed = 0
    for i, case in enumerate(CASES):
        outcome = run_case(case, work / f"case-{i}", tiny)
        try:
            check_outcome(case, outcome)
            verdict = ""
        except AssertionError:
            failed += 1
            verdict = "FAILED "
        stop = f"{outcome.stop_s:6.1f}" if outcome.stop_s is not None else f"{'-':>6}"
        print(
            f"{case.name:<40} {case.command:<6} {outcome.code:>4} {case.exit_code:>4} {outcome.seconds:6.1f} {stop}  "
            f"{verdict}{outcome.line}",
            flush=True,
        )
    print(f"misconfiguration suite: {len(CASES)} cases, {len(CASES) - failed} as expected, {failed} not")


if __name__ == "__main__":
    main()
