"""Every failure carries one exit code, and the README's table says what each means."""

import re
from pathlib import Path

import pytest

from vllm_dropin import errors
from vllm_dropin.errors import ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_lists_every_exit_code():
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", README.read_text(), flags=re.MULTILINE)
    assert [(int(code), name) for code, name in rows] == [(c.value, c.name) for c in ExitCode]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ConfigError, ExitCode.CONFIG),
        (errors.HookError, ExitCode.HOOK),
        (errors.StartupError, ExitCode.STARTUP),
        (errors.ServingError, ExitCode.SERVING_FAILED),
    ],
)
def test_each_error_carries_its_code(error, code):
    assert error("x").exit_code == code
