#!/usr/bin/env bash
# The CUDA tarball on a CUDA host, as the image runs it: build it, unpack it, run its install
# step (install.sh /opt/venv requirements.lock: DRUM + the environment into a venv of their own,
# here from a folder of wheels, as the host has no index), then start its start_server.sh with
# vLLM in another Python (DROPIN_VLLM_PYTHON, the base image's Python in the image; here python3
# with the vLLM wheelhouse that bench/gpu/run.sh installs), and answer a batch CSV and a chat.
#   bench/gpu/check_tarball.sh SITE_VLLM DRUM_WHEELS OUT
set -euo pipefail
site_vllm=$1 wheels=$2 out=$3
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
mkdir -p "$out"

ctx="$work/context"; mkdir -p "$ctx"
tar -xzf "$(python3 "$repo/build_context.py" --out "$work")" -C "$ctx"
grep -E '^(ARG VLLM_VERSION|FROM)' "$ctx/Dockerfile" | tee "$out/dockerfile-base.txt"

# What the image's base Python is here: python3 with vLLM importable.
printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' "$site_vllm" "$(command -v python3)" \
  > "$work/vllm-python"
chmod +x "$work/vllm-python"
export DROPIN_VLLM_PYTHON="$work/vllm-python"
export VLLM_VERSION=$(sed -n 's/^ARG VLLM_VERSION=//p' "$ctx/Dockerfile")

start=$(date +%s)
(cd "$ctx" && PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheels" bash install.sh "$work/venv" requirements.lock) 2>&1 | tee "$out/install.log"
echo "install step: $(( $(date +%s) - start )) s" | tee -a "$out/install.log"
if "$work/venv/bin/python" -c "import vllm" 2>/dev/null; then echo "venv must not hold vLLM" >&2; exit 1; fi

# The template model folder, fetching a ~1B random model from a local folder (artifact_uri).
model=/tmp/model-1b
[ -f "$model/config.json" ] || (cd "$repo" && "$DROPIN_VLLM_PYTHON" -m demo.tiny_model "$model" --size 1b --device cuda)
code="$work/code"; cp -r "$repo/custom_model_template" "$code"
echo '{"args": ["--max-model-len", "2048"]}' > "$code/engine_config.json"
params() { printf '{"type": "%s", "payload": %s}' "$1" "$2"; }

# NVLink multicast off for every process; no FlashInfer wheel on this host (../shared/gpu/README.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_NO_USAGE_STATS=1
env -u PYTHONPATH PATH="$work/venv/bin:/usr/local/bin:/usr/bin:/bin" HOME="$work/home" \
  CODE_DIR="$code" ADDRESS=127.0.0.1:8080 TARGET_NAME=resultText \
  MLOPS_RUNTIME_PARAM_artifact_uri="$(params string "\"$model\"")" \
  MLOPS_RUNTIME_PARAM_max_tokens="$(params numeric 16)" \
  MLOPS_RUNTIME_PARAM_temperature="$(params numeric 0)" \
  setsid "$ctx/start_server.sh" > "$out/environment.log" 2>&1 &
pid=$!
"$work/venv/bin/python" - "$out" "$pid" <<'PY' | tee "$out/result.txt"
import json, os, sys, time
import requests
out, pid = sys.argv[1], int(sys.argv[2])
url = "http://127.0.0.1:8080"
start = time.monotonic()
while True:
    try:
        if requests.get(f"{url}/v1/models", timeout=5).status_code == 200:
            break
    except requests.RequestException:
        pass
    os.kill(pid, 0)  # raises if the environment exited
    assert time.monotonic() - start < 480, "not ready in 480 s"
    time.sleep(1)
print(f"ready after {time.monotonic() - start:.1f} s")
csv = "promptText\nHello\nWhat is a GPU?\nCount to five\n"
batch = requests.post(f"{url}/predictions/", data=csv, headers={"Content-Type": "text/csv"}, timeout=300)
print("batch:", batch.status_code, batch.text[:400])
chat = requests.post(f"{url}/v1/chat/completions", timeout=300, json={
    "model": "datarobot-deployed-llm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
print("chat:", chat.status_code, chat.text[:400])
rows = batch.json()["predictions"]
assert batch.status_code == 200 and len(rows) == 3 and all(rows), rows
assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"]
print(f"OK: batch rows {len(rows)}, chat completion tokens {chat.json()['usage']['completion_tokens']}")
PY
grep -E "vLLM command|model:" "$out/environment.log" | head -3 || true
code=0
kill -TERM "$pid"
wait "$pid" || code=$?
echo "exit code after SIGTERM: $code" | tee -a "$out/result.txt"
[ "$code" -eq 0 ]
