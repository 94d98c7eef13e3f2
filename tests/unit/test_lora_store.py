"""Adapters from lora_adapters_uri: the URI of each, the plan and vLLM's flags with a store, and the
loader (fetch once, check, load into a vLLM stand-in that records its loads) on a local folder store."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest

from tests.helpers import make_lora, plan_of, serve_http
from vllm_dropin.config import runtime_params, vllm_flags
from vllm_dropin.contract import VllmEndpoint
from vllm_dropin.drum.model_names import ModelNames
from vllm_dropin.errors import ConfigError
from vllm_dropin.events import EventReporter
from vllm_dropin.launch import vllm_command
from vllm_dropin.launch.adapter_loader import MISSING_TTL_S, AdapterLoader
from vllm_dropin.launch.adapter_service import AdapterService
from vllm_dropin.model import footprint, lora_store
from vllm_dropin.model.artifacts.uri import child, parse
from vllm_dropin.model.source import ModelSource
from vllm_dropin.planning.gpus import GpuInventory
from vllm_dropin.planning.parallel import ParallelInputs

H100 = 80 * 2**30


@pytest.mark.parametrize(
    ("given", "named", "prefix"),
    [
        ("s3://bucket/adapters", "s3://bucket/adapters/tone", "adapters/tone/"),
        ("s3://bucket", "s3://bucket/tone", "tone/"),
        ("gs://b/p/", "gs://b/p/tone", "p/tone/"),
        ("az://container/p", "az://container/p/tone", "p/tone/"),
        (
            "https://acct.blob.core.windows.net/c/p?sv=secret",
            "https://acct.blob.core.windows.net/c/p/tone?sv=secret",
            "p/tone/",
        ),
    ],
)
def test_an_adapter_is_its_folder_under_the_prefix_a_signed_query_kept(given, named, prefix):
    found = child(parse(given, None, "lora_adapters_uri"), "tone")
    assert (found.text, found.prefix, found.param) == (named, prefix, "lora_adapters_uri")
    assert "secret" not in found.label and found.label.startswith("lora_adapters_uri ")


def test_a_folder_and_a_hub_organisation_hold_adapters_too(tmp_path):
    assert child(parse(str(tmp_path), None, "lora_adapters_uri"), "tone").text == str(tmp_path / "tone")
    hub = child(parse("hf://acme", None, "lora_adapters_uri"), "tone")
    assert (hub.kind, hub.bucket, hub.text) == ("hf", "acme/tone", "hf://acme/tone")


@pytest.mark.parametrize("uri", ["https://example.com/adapters.tar.gz", "/tmp/adapters.zip", "hf://acme/x@main"])
def test_a_uri_that_holds_no_folders_is_refused_naming_the_parameter(uri):
    with pytest.raises(ConfigError, match=r"runtime parameter 'lora_adapters_uri': .* is not a prefix of folders"):
        lora_store.store_uri(runtime_params.parse({"lora_adapters_uri": uri}))


@pytest.mark.parametrize("name", ["../tiny", "a/b", "..", ".hidden", "a..b", "", "x" * 300 + "/"])
def test_names_that_could_leave_the_prefix_are_not_adapter_names(name):
    assert not lora_store.is_name(name)


def test_a_store_turns_lora_on_with_one_api_server_and_vllms_default_rank(tiny_model, tmp_path):
    settings = runtime_params.parse({"model": str(tiny_model), "lora_adapters_uri": "s3://b/adapters"})
    launch = plan_of(settings, [], tmp_path, GpuInventory(2, H100), cpus=16)
    command = vllm_command.build(launch)
    parsed = vllm_flags.parse(command.argv[2:], "argv")
    assert parsed["enable_lora"] and parsed["max_lora_rank"] == 16 and parsed["max_loras"] == 8
    assert "lora_modules" not in parsed
    assert parsed["api_server_count"] == 1  # two replicas would get one each: vLLM loads adapters on one only
    assert command.layout.api_servers == 1 and command.layout.lora_rank == 16
    assert "--api-server-count" not in vllm_command.build(plan_of(settings, [], tmp_path)).argv  # one engine


def test_a_users_api_server_count_above_one_cannot_serve_a_store(tiny_model, tmp_path):
    settings = runtime_params.parse({"model": str(tiny_model), "lora_adapters_uri": "s3://b/a"})
    with pytest.raises(ConfigError, match="--api-server-count 2 cannot serve lora_adapters_uri"):
        vllm_command.build(plan_of(settings, ["--api-server-count", "2"], tmp_path, GpuInventory(1, H100), cpus=16))


def test_the_batch_adapter_may_come_from_the_store_and_the_rank_from_the_user(tiny_model, tmp_path):
    params = {"model": str(tiny_model), "lora_adapters_uri": "s3://b/a", "lora_adapter": "later", "max_lora_rank": 64}
    command = vllm_command.build(plan_of(runtime_params.parse(params), [], tmp_path))
    assert command.layout.lora_rank == 64 and "--max-lora-rank 64" in " ".join(command.argv)


def test_without_a_store_nothing_changes(tiny_model, tmp_path):
    launch = plan_of(runtime_params.parse({"model": str(tiny_model)}), [], tmp_path)
    assert not launch.adapter_store and ParallelInputs("auto", launch.parallel.gpus, None, None).one_api_server is False
    assert vllm_command.build(launch).layout.lora_rank is None


class Vllm(BaseHTTPRequestHandler):
    """vLLM's /v1/load_lora_adapter, recording each load (slowly, so that callers overlap)."""

    loads: ClassVar[list[dict]] = []
    refuse: ClassVar[str | None] = None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Vllm.loads.append({**body, "auth": self.headers["Authorization"]})
        threading.Event().wait(0.2)
        status, data = (
            (200, b"Success")
            if Vllm.refuse is None
            else (500, json.dumps({"error": {"message": Vllm.refuse}}).encode())
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def store(tmp_path, tiny_model, lora8):
    root = tmp_path / "store"
    shutil.copytree(lora8, root / "tone")
    shutil.copytree(lora8, root / "too-big")
    config = json.loads((root / "too-big" / "adapter_config.json").read_text())
    (root / "too-big" / "adapter_config.json").write_text(json.dumps({**config, "r": 32}))
    Vllm.loads, Vllm.refuse = [], None
    return root


@pytest.fixture(scope="module")
def lora8(tiny_model, tmp_path_factory):
    return make_lora(tiny_model, tmp_path_factory.mktemp("lora") / "a", rank=8)


def loader_for(store, url, tiny_model, tmp_path, clock=None) -> AdapterLoader:
    settings = runtime_params.parse({"lora_adapters_uri": str(store)})
    model = ModelSource(str(tiny_model), True, "test", "tiny")
    extra = {"clock": clock} if clock else {}
    vllm = VllmEndpoint(f"{url}/v1", "launch-key")
    base = footprint.read_tensors(tiny_model)
    return AdapterLoader(lora_store.store_uri(settings), settings, tmp_path / "cache", model, base, vllm, lambda: 16,
                         EventReporter({}), **extra)  # fmt: skip


def test_many_first_requests_at_once_load_an_adapter_once(store, tiny_model, tmp_path):
    with serve_http(Vllm) as url:
        loader = loader_for(store, url, tiny_model, tmp_path)
        outcomes = []
        threads = [threading.Thread(target=lambda: outcomes.append(loader.ensure("tone"))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert [o.status for o in outcomes] == [200] * 8
    assert Vllm.loads == [{"lora_name": "tone", "lora_path": str(store / "tone"), "auth": "Bearer launch-key"}]


def test_a_broken_adapter_is_400_naming_why_and_its_reason_leaves_the_name_out(store, tiny_model, tmp_path):
    with serve_http(Vllm) as url:
        outcome = loader_for(store, url, tiny_model, tmp_path).ensure("too-big")
    assert outcome.status == 400 and Vllm.loads == []
    assert outcome.message == "LoRA adapter too-big: rank 32 is above this deployment's max_lora_rank (16)"
    assert outcome.reason == "rank 32 is above this deployment's max_lora_rank (16)"


def test_vllms_refusal_is_400_with_its_message(store, tiny_model, tmp_path):
    Vllm.refuse = "something vLLM checks"
    with serve_http(Vllm) as url:
        outcome = loader_for(store, url, tiny_model, tmp_path).ensure("tone")
    assert (outcome.status, outcome.reason) == (400, "vLLM could not load it: something vLLM checks")


def test_a_name_the_store_lacks_is_404_and_asked_again_only_after_a_while(store, tiny_model, tmp_path):
    now = [0.0]
    with serve_http(Vllm) as url:
        loader = loader_for(store, url, tiny_model, tmp_path, clock=lambda: now[0])
        assert loader.ensure("later").status == 404
        assert loader.ensure("../store/tone").status == 404  # never leaves the prefix
        shutil.copytree(store / "tone", store / "later")
        assert loader.ensure("later").status == 404  # remembered as missing
        now[0] += MISSING_TTL_S + 1
        assert loader.ensure("later").status == 200
    assert [load["lora_name"] for load in Vllm.loads] == ["later"]


def test_drums_workers_ask_through_the_unix_socket_and_remember_what_is_loaded(store, tiny_model, tmp_path):
    with serve_http(Vllm) as url:
        service = AdapterService(loader_for(store, url, tiny_model, tmp_path), tmp_path / "adapters.sock")
        try:
            names = ModelNames(["datarobot-deployed-llm"], str(tmp_path / "adapters.sock"))
            assert names.ready("tone") is None and "tone" in names
            assert names.ready("missing") is None and "missing" not in names  # vLLM's own 404 follows
            refusal = names.ready("too-big")
            assert (refusal.status, refusal.reason) == (400, "rank 32 is above this deployment's max_lora_rank (16)")
            assert names.ready("tone") is None and len(Vllm.loads) == 1  # known: not asked again
        finally:
            service.close()
    assert ModelNames([], None).ready("anything") is None  # no store: nothing is asked
