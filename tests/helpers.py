"""Helpers for tests: model folders made from custom_model_template/ as a user would upload them."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from demo.running import REPO, RunningEnvironment, runtime_param_env
from vllm_dropin import config, pipeline
from vllm_dropin.config import Config
from vllm_dropin.config.settings import Settings
from vllm_dropin.model import facts as model_facts
from vllm_dropin.planning import plan
from vllm_dropin.planning.gpus import GpuInventory

# CPU-friendly and deterministic: float32 greedy output does not depend on batch composition.
CPU_ENGINE_ARGS = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "1024"]

COUNTING_HOOK = '''"""A load_model that only counts its calls in a marker file: the model comes from artifact_uri."""
import os


def load_model(code_dir):
    with open(os.environ["HOOK_MARKER"], "a") as marker:
        marker.write(f"{os.getpid()}\\n")
'''

ENDLESS_HOOK = '''"""A load_model that never ends, its work in a pool's thread as a download's would be."""
import time
from concurrent.futures import ThreadPoolExecutor


def load_model(code_dir):
    ThreadPoolExecutor(1).submit(time.sleep, 3600).result()
'''

BESIDE_CHECK_HOOK = '''"""A load_model that fails, saying whether vLLM's flag check ran while it did."""
import os
import time


def load_model(code_dir):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if b"--check-flags" in cmdline:
                raise RuntimeError("ran beside the flag check")
        time.sleep(0.05)
    raise RuntimeError("saw no flag check")
'''


def plan_of(
    settings: Settings,
    engine_args: list[str],
    code_dir: Path,
    gpus: GpuInventory = plan.NO_GPU,
    cpus: int | None = None,
) -> plan.LaunchPlan:
    """The plan `serve` builds once load_model and the fetch are done: the pipeline's pure stages."""
    asked = config.of(code_dir, settings, engine_args)  # flags given here, not in engine_config.json
    return plan.build(asked, facts_of(asked), gpus, cpus)


def facts_of(config: Config) -> model_facts.ModelFacts:
    """The model stage's reading of the folder as it is (after load_model and the fetch)."""
    return model_facts.read(pipeline.source_of(config), config.code_dir, config.settings)


def make_model_folder(
    root: Path, engine_args: list[str] | None = CPU_ENGINE_ARGS, custom_py: str | None = None
) -> Path:
    """A model folder as a user would upload it: the template plus this test's engine_config and hook."""
    folder = root / "model-folder"
    shutil.copytree(REPO / "custom_model_template", folder)
    if engine_args is None:
        (folder / "engine_config.json").unlink()
    else:
        (folder / "engine_config.json").write_text(json.dumps({"args": engine_args}))
    if custom_py is not None:
        (folder / "custom.py").write_text(custom_py)
    return folder


def counting_custom_py() -> str:
    return COUNTING_HOOK


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class JsonPosts(BaseHTTPRequestHandler):
    """A keep-alive server taking JSON POSTs, as vLLM's uvicorn: each is kept in the subclass's
    `seen` as (client port, path, Authorization, body) and answered by its `answer()`."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, str, str | None, dict]]

    def answer(self, body: dict) -> tuple[int, str, bytes]:
        """(status, content type, data)"""
        raise NotImplementedError

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.client_address[1], self.path, self.headers.get("Authorization"), body))
        status, kind, data = self.answer(body)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_http(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local threading http server with `handler`; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serve_folder(root: Path) -> contextlib.AbstractContextManager[str]:
    """A local http server over `root` (an artifact store); yields its base URL."""
    return serve_http(functools.partial(_QuietHandler, directory=str(root)))


def make_lora(
    base: Path, out: Path, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj"), seed: int = 0
) -> Path:
    """A PEFT LoRA adapter for the model in `base`, saved to `out`, with random non-zero weights
    (PEFT's default leaves B at zero, which would answer exactly as the base model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    peft_model.save_pretrained(out)
    return out


@contextlib.contextmanager
def serving(folder: Path, root: Path, params: dict) -> Iterator[RunningEnvironment]:
    """The environment on `folder` with these runtime parameters, ready; stopped afterwards."""
    env = RunningEnvironment(folder, root / "environment.log", env=runtime_param_env(params))
    try:
        env.wait_ready()
        yield env
    finally:
        env.stop()
