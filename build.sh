#!/usr/bin/env bash
# Build the environment tarball to upload: dist/vllm-dropin-<device>.tar.gz, a Docker build
# context, byte-identical for the same tree. `./build.sh --help` lists the options.
set -euo pipefail
exec python3 "$(dirname "$0")/build_context.py" "$@"
