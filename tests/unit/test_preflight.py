"""Pre-flight: what is knowable about the model without vLLM is answered in one line, in milliseconds."""

import json
import time

import pytest

from tests.helpers import facts_of, plan_of, serve_folder
from vllm_dropin import config
from vllm_dropin.config import runtime_params
from vllm_dropin.errors import ConfigError
from vllm_dropin.model import preflight


def model_folder(root, config=None, tokenizer=True):
    folder = root / "m"
    folder.mkdir()
    if config is not False:
        (folder / "config.json").write_text(json.dumps(config or {"max_position_embeddings": 2048}))
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def run(tmp_path, params, engine=(), environ=None):
    asked = config.of(tmp_path, runtime_params.parse(params), list(engine))
    facts = facts_of(asked)
    preflight.check(facts, asked.settings, asked.engine_args, environ or {})
    return facts


@pytest.mark.parametrize(
    ("make", "params", "engine", "expected"),
    [
        (None, {"model": "/models/llama-3-8b-instruct"}, [], "runtime parameter 'model': no such folder "),
        (None, {"model": "./weights"}, [], "no such folder"),
        (None, {}, ["--model", "/nowhere/model"], "--model in engine_config.json: no such folder /nowhere/model"),
        ({"config": False}, {}, [], "has no config.json"),
        ({"tokenizer": False}, {}, [], "has no tokenizer files (one of tokenizer.json, tokenizer.model"),
        ({}, {"max_model_len": 100000}, [], "'max_model_len' is 100000 but the model allows at most 2048"),
        ({"config": {"max_position_embeddings": 2048.0}}, {"max_model_len": 4096}, [], "allows at most 2048 "),
        (
            {"config": {"max_position_embeddings": 2048, "rope_parameters": {"rope_type": "default"}}},
            {"max_model_len": 4096},
            [],
            "allows at most 2048 ",
        ),
    ],
)
def test_problems_are_named(tmp_path, make, params, engine, expected):
    if make is not None:
        params = {"model": str(model_folder(tmp_path, **make)), **params}
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        run(tmp_path, params, engine)


@pytest.mark.parametrize(
    ("config", "params", "engine"),
    [
        ({"max_position_embeddings": 2048}, {"max_model_len": 2048}, []),
        ({"max_position_embeddings": 2048}, {"max_model_len": 100000}, ["--max-model-len", "1024"]),  # flag wins
        (
            {"max_position_embeddings": 2048, "rope_scaling": {"rope_type": "yarn", "factor": 4}},
            {"max_model_len": 8192},
            [],
        ),
        ({"text_config": {"max_position_embeddings": 4096}}, {"max_model_len": 4096}, []),
    ],
)
def test_what_is_not_certain_is_left_to_vllm(tmp_path, config, params, engine):
    run(tmp_path, {"model": str(model_folder(tmp_path, config)), **params}, engine)


def test_a_separate_tokenizer_is_allowed(tmp_path):
    folder = model_folder(tmp_path, tokenizer=False)
    run(tmp_path, {"model": str(folder)}, ["--tokenizer", str(folder)])


def test_a_path_that_does_not_exist_is_never_sent_to_the_hub(tmp_path):
    launch = plan_of(runtime_params.parse({"model": "/models/llama-3-8b-instruct"}), [], tmp_path)
    assert launch.model.local


def test_hub_offline_is_named_at_once(tmp_path):
    with pytest.raises(ConfigError, match="comes from the Hugging Face hub, but HF_HUB_OFFLINE is set"):
        run(tmp_path, {"model": "org/model"}, environ={"HF_HUB_OFFLINE": "1"})


def test_an_unreachable_hub_is_named_within_15_s(tmp_path):
    started = time.monotonic()
    with pytest.raises(
        ConfigError,
        match=r"model 'org/model' comes from the Hugging Face hub \(http://127.0.0.1:9\), "
        "which cannot be reached .*air-gapped\\? fetch the model with artifact_uri or load_model",
    ):
        run(tmp_path, {"model": "org/model"}, environ={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert time.monotonic() - started < 15


def test_a_mirror_that_knows_the_model_lets_it_through_and_one_that_does_not_is_named(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "api" / "models" / "org").mkdir(parents=True)
    (mirror / "api" / "models" / "org" / "model").write_text("{}")
    with serve_folder(mirror) as url:
        run(tmp_path, {"model": "org/model"}, environ={"HF_ENDPOINT": url})
        with pytest.raises(ConfigError, match="answered HTTP 404 for 'org/other': the id is wrong, or it is gated"):
            run(tmp_path, {"model": "org/other"}, environ={"HF_ENDPOINT": url})
