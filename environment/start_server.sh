#!/usr/bin/env bash
# Entrypoint of the image: start the vLLM drop-in environment on the model in $CODE_DIR.
# Settings come from the platform: runtime parameters (MLOPS_RUNTIME_PARAM_*), TARGET_NAME,
# ADDRESS (default 0.0.0.0:8080). Extra arguments go to `python -m vllm_dropin serve`.
# `start_server.sh ray-worker --head HOST:PORT` instead joins a deployment's Ray cluster as a
# worker node (the serving container, with runtime parameter ray_nodes, is the head).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1
if [ "${1:-}" = ray-worker ]; then
  shift
  exec "${PYTHON:-python3}" -m vllm_dropin ray-worker "$@"
fi
exec "${PYTHON:-python3}" -m vllm_dropin serve "$@"
