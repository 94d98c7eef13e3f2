#!/usr/bin/env bash
# The benchmark on a CUDA host with Python 3.12 and torch 2.11.0+cu130 but no internet.
# Installs vLLM 0.25.0 (the wheelhouse that ../shared/gpu/make-wheelhouse.sh makes, parts
# gathered in STASH) and DRUM's closure minus what the host has (EXTRA: a folder of wheels),
# builds the ~1B random-weight model (SIZE=8b: the 8B-shaped one; SHARD=64MB: in safetensors files
# of at most that size) with the project's offline tokenizer, and runs
# `python -m bench`: our entrypoint exactly as the image starts it (start_server.sh, runtime
# parameters as MLOPS_RUNTIME_PARAM_*, an engine_config.json), tensor parallel resolved from
# the visible GPUs. BENCH=bench.scenarios.deployments runs the deployment benchmark instead.
#   bench/gpu/run.sh STASH SHA256_FILE INSTALL_SCRIPT EXTRA OUT [bench options ...]
set -euo pipefail
stash=$1 sum=$2 installer=$3 extra=$4 out=$5
shift 5
bash "$installer" "$stash" "$sum" /tmp/site-vllm
[ -f /tmp/site-extra/.installed ] || {
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-extra "$extra"/*.whl
  touch /tmp/site-extra/.installed
}
# The image has its packages' bytecode (install.sh writes it); without it every Python process of
# the first start compiles vLLM from source (bench/README #48, #51). A file that does not compile
# is skipped, as pip does.
[ -f /tmp/site-vllm/.compiled ] || {
  python3 -m compileall -q -j 0 /tmp/site-vllm /tmp/site-extra > /dev/null || echo "bytecode: some files did not compile"
  touch /tmp/site-vllm/.compiled
}
repo=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH="/tmp/site-extra:/tmp/site-vllm:$repo/environment:$repo"
export PATH="/tmp/site-extra/bin:/tmp/site-vllm/bin:$PATH"
# Measured needs of this host (../shared/gpu/README.md), and NVLink multicast off everywhere.
export VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# The image's install writes vLLM's model infos (install.sh); here, under this Python's prefix.
[ -f /tmp/site-vllm/.model-infos ] || {
  bash "$repo/environment/install.sh" --model-infos python3 "$(python3 -c 'import sys; print(sys.prefix)')"
  touch /tmp/site-vllm/.model-infos
}
model=/tmp/model-${SIZE:-1b}${SHARD:+-$SHARD}  # SIZE=8b: Llama-3-8B's shape
[ -f "$model/config.json" ] || python3 -m demo.tiny_model "$model" --size "${SIZE:-1b}" --device cuda \
  ${SHARD:+--max-shard-size "$SHARD"}
cd "$repo"
# exec: `timeout`'s TERM reaches the benchmark, which stops its servers (bench/run.py).
exec python3 -m bench.run "${BENCH:-bench}" --model "$model" --out "$out" "$@"
