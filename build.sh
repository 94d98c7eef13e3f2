#!/usr/bin/env bash
# Build the uploadable environment tarball: dist/vllm-dropin-env.tar.gz, a Docker build context.
set -euo pipefail
usage() { echo "usage: $0 [--help]   builds dist/vllm-dropin-env.tar.gz"; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "build.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
mkdir -p dist
tar --sort=name --mtime='2020-01-01 00:00Z' --owner=0 --group=0 --numeric-owner --dereference \
    --exclude='__pycache__' --exclude='*.pyc' \
    -cf - Dockerfile environment/install.sh environment/start_server.sh environment/requirements-cpu.lock \
    environment/vllm_dropin schemas | gzip -n > dist/vllm-dropin-env.tar.gz
echo "dist/vllm-dropin-env.tar.gz"
