"""The demo: serve the offline tiny model through the environment, answer a CSV batch and a chat.

Builds the model (no hub needed), makes a model folder from custom_model_template/ with
`artifact_uri` naming the model's folder (the air-gapped flow: served in place, hub access off),
starts environment/start_server.sh as the image would, prints both answers and stops cleanly.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import openai
import requests
import yaml

from demo.running import REPO, RunningEnvironment
from demo.tiny_model import build_model

WORK = REPO / ".build" / "demo"
CSV = "promptText\nWhat is vLLM?\nWrite a haiku about GPUs.\nName three colours.\n"


def prepare() -> Path:
    model = WORK / "tiny-model"
    if not (model / "config.json").exists():
        build_model(model)
    code_dir = WORK / "model-folder"
    shutil.rmtree(code_dir, ignore_errors=True)
    shutil.copytree(REPO / "custom_model_template", code_dir)
    # CPU-friendly engine flags; on a GPU the template's engine_config.json is the starting point.
    (code_dir / "engine_config.json").write_text('{"args": ["--enforce-eager", "--max-model-len", "512"]}\n')
    (WORK / "runtime-params.yaml").write_text(
        yaml.safe_dump({"artifact_uri": str(model), "max_tokens": 16, "temperature": 0.0})
    )
    return code_dir


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    code_dir = prepare()
    env = RunningEnvironment(
        code_dir, WORK / "environment.log", args=["--runtime-params-file", str(WORK / "runtime-params.yaml")]
    )
    print(f"starting the environment on {code_dir} (log: {env.log_path}) ...", flush=True)
    try:
        env.wait_ready()
        batch = requests.post(f"{env.url}/predictions/", data=CSV, headers={"Content-Type": "text/csv"}, timeout=300)
        print(f"POST /predictions/ -> {batch.status_code}\n{batch.text}")
        client = openai.OpenAI(base_url=f"{env.url}/v1", api_key="not-needed-locally")
        reply = client.chat.completions.create(
            model="datarobot-deployed-llm", messages=[{"role": "user", "content": "Hello!"}], max_tokens=16
        )
        print(f"chat completion -> {reply.choices[0].message.content!r} (model {reply.model})")
        ok = batch.status_code == 200 and reply.choices
    finally:
        code = env.stop()
    print(f"environment stopped with exit code {code} (the random-weight model answers gibberish: that is expected)")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
