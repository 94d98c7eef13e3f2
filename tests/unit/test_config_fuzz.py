"""Config fuzzing: generated runtime parameters and engine_config.json files are either accepted
or rejected with one clear line; never a traceback, never an accepted config that is invalid.

Runs the same steps as startup, in-process: runtime_params.read() (DRUM's RuntimeParameters over
MLOPS_RUNTIME_PARAM_* variables), the pipeline's stages (engine_config.json, the model folder read,
the plan) and vllm_command.build() (vLLM's own parser). Figures: `make reliability` (this module as a
script, more examples).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_dropin import config as config_stage
from vllm_dropin import pipeline
from vllm_dropin.config import engine_config, runtime_params, vllm_flags
from vllm_dropin.config.settings import PARAMETERS
from vllm_dropin.errors import ConfigError
from vllm_dropin.launch import vllm_command
from vllm_dropin.model import facts as model_facts
from vllm_dropin.planning import plan
from vllm_dropin.planning.gpus import visible

SECRET = "hf_FuzzSecretToken42"
FLAGS = [
    "--max-model-len", "--max_model_len", "--max-model-len=64", "-tp", "--tensor-parallel-size", "-pp", "-dp",
    "--dtype", "--served-model-name", "--gpu-memory-utilization", "--host", "--port", "--api-key",
    "--max-modle-len", "--enforce-eager", "--model", "--trust-remote-code", "--max-num-seqs", "--seed", "-x", "--",
]  # fmt: skip
VALUES = ["512", "-1", "0", "2", "1e9", "auto", "float32", "☃", "", "9" * 30, "nan", "m", "--"]
OUTCOMES: Counter[str] = Counter()
# What an environment variable or a UTF-8 file can hold: no NUL, no lone surrogates.
text = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
payloads = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=3),
    st.dictionaries(text, json_scalars, max_size=2),
    st.just({"credentialType": "api_token", "apiToken": SECRET}),
    st.just({"credentialType": "api_token", "apiToken": ""}),
)


@st.composite
def param_env(draw) -> dict[str, str]:
    env = {}
    for param in draw(st.lists(st.sampled_from(PARAMETERS), max_size=6, unique_by=lambda p: p.name)):
        kind = draw(st.sampled_from([param.type, param.type, "string", "numeric", "boolean", "credential", "x"]))
        encoded = json.dumps({"type": kind, "payload": draw(payloads)})
        env[f"MLOPS_RUNTIME_PARAM_{param.name}"] = draw(st.one_of(st.just(encoded), text))
    return env


tokens = st.one_of(st.sampled_from(FLAGS), st.sampled_from(VALUES), text)
engine_docs = st.one_of(
    st.builds(lambda args: json.dumps({"args": args}), st.lists(tokens, max_size=6)),
    st.builds(lambda args: json.dumps({"args": args}), st.lists(json_scalars, max_size=3)),
    st.builds(json.dumps, st.dictionaries(st.sampled_from(["args", "flags", ""]), payloads, max_size=2)),
    text,
    st.just(None),  # no engine_config.json
)


def _bounded(param, value) -> bool:
    if value is None or param.type not in ("numeric",):
        return True
    low_ok = param.minimum is None or (value > param.minimum if param.minimum_exclusive else value >= param.minimum)
    return math.isfinite(value) and low_ok and (param.maximum is None or value <= param.maximum)


def check_one(env: dict[str, str], engine_text: str | None, visible_gpus: int, code_dir: Path) -> str:
    """'accepted' or 'rejected'; AssertionError on a traceback, a bad message or an invalid launch."""
    config = code_dir / engine_config.FILENAME
    config.unlink(missing_ok=True)
    if engine_text is not None:
        config.write_text(engine_text, encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        try:
            settings = runtime_params.read()
            gpus = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, range(visible_gpus)))}
            config = config_stage.load(code_dir, settings)
            facts = model_facts.read(pipeline.source_of(config), code_dir, settings)
            command = vllm_command.build(plan.build(config, facts, visible(gpus)))
        except ConfigError as exc:
            message = str(exc)
            assert message and "\n" not in message and "Traceback" not in message, message
            assert SECRET not in message, message
            return "rejected"
    # Accepted: it must be a config we would stand behind.
    assert all(_bounded(p, getattr(settings, p.name)) for p in PARAMETERS), settings
    vllm_flags.parse(command.argv[2:], "final")  # vLLM's parser takes the final argv
    explicit = vllm_flags.parse(command.argv[3:], "final")
    assert not {"host", "port", "api_key"} & explicit.keys()
    gpus = int(explicit.get("tensor_parallel_size") or 1) * int(explicit.get("pipeline_parallel_size") or 1)
    assert visible_gpus == 0 or gpus * int(explicit.get("data_parallel_size") or 1) <= visible_gpus
    return "accepted"


def _code_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    (folder / "vllm").mkdir()
    (folder / "vllm" / "config.json").write_text("{}")
    return folder


CODE_DIR = _code_dir()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=param_env(), engine_text=engine_docs, visible_gpus=st.integers(0, 8))
def test_generated_configs_are_accepted_or_rejected_in_one_clear_line(env, engine_text, visible_gpus):
    OUTCOMES[check_one(env, engine_text, visible_gpus, CODE_DIR)] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description="config fuzzing figures")
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args()
    logging.getLogger("vllm").setLevel(logging.ERROR)  # vLLM warns about every duplicated flag
    run = settings(max_examples=args.examples, deadline=None, suppress_health_check=list(HealthCheck))(
        test_generated_configs_are_accepted_or_rejected_in_one_clear_line.hypothesis.inner_test
    )
    given(env=param_env(), engine_text=engine_docs, visible_gpus=st.integers(0, 8))(run)()
    tried = sum(OUTCOMES.values())
    print(
        f"config fuzzing: {tried} cases tried, {OUTCOMES['rejected']} rejected with one clear line, "
        f"{OUTCOMES['accepted']} accepted, 0 tracebacks, 0 launches with an invalid config"
    )


if __name__ == "__main__":
    main()
