"""Why the environment stops: one error type per cause, each carrying its exit code.

The supervisor and `check` have one handler: log the error's one line, report it to the
platform, exit with its code. The README's exit-code table is tested against `ExitCode`.
"""

from __future__ import annotations

import logging
import traceback
from enum import IntEnum
from typing import Protocol

log = logging.getLogger("vllm_dropin")


class ExitCode(IntEnum):
    """Exit status of `python -m vllm_dropin serve|check` (and so of the container)."""

    OK = 0
    """Stopped on request (SIGTERM/SIGINT), or `check` found nothing wrong."""
    SERVING_FAILED = 1
    """vLLM or DRUM died after the deployment was ready; the platform restarts the container."""
    CONFIG = 2
    """A runtime parameter, engine_config.json or the model folder is wrong; nothing was launched."""
    HOOK = 3
    """The model's custom.py failed to import, or its load_model raised."""
    STARTUP = 4
    """vLLM or DRUM exited during startup, or vLLM was not healthy within startup_timeout_seconds,
    or DRUM's address cannot be bound."""
    ARTIFACT = 5
    """artifact_uri could not be fetched (store unreachable, access denied, missing, checksum mismatch);
    what was fetched whole is kept in cache_dir, so a restart resumes."""


class DropinError(Exception):
    """An error that stops the environment: a one-line message without secrets (logged and sent
    as the platform event) and, for a child that failed, `detail`: its log tail, logged only."""

    exit_code: ExitCode = ExitCode.SERVING_FAILED

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class ConfigError(DropinError):
    """A user-fixable problem with parameters, engine_config.json or the model folder.

    The message is one line that names the field (or file and JSON path) and what was
    expected; it never contains a secret value.
    """

    exit_code = ExitCode.CONFIG


class HookError(DropinError):
    """The model's custom.py failed to import or its load_model raised; __cause__ holds why."""

    exit_code = ExitCode.HOOK


class StartupError(DropinError):
    """vLLM or DRUM exited during startup, vLLM did not become healthy in time, or DRUM's address cannot be bound."""

    exit_code = ExitCode.STARTUP


class ArtifactError(DropinError):
    """Fetching artifact_uri failed; the message names the URI (never a key or a signed query) and why."""

    exit_code = ExitCode.ARTIFACT


class ArtifactMissing(ArtifactError):
    """The store answered, and holds nothing at the URI."""


class ServingError(DropinError):
    """A child died after the deployment was ready."""

    exit_code = ExitCode.SERVING_FAILED


class Reporter(Protocol):
    def report(self, title: str, message: str = "") -> None: ...


def report_failure(exc: DropinError, reporter: Reporter | None = None) -> ExitCode:
    """The one handler of every failure: log its line (and detail), report it, give its exit code."""
    if isinstance(exc, HookError) and exc.__cause__ is not None:  # the user's own code: its traceback helps
        cause = exc.__cause__
        traceback.print_exception(type(cause), cause, cause.__traceback__)
    if exc.detail is not None:
        log.info("last log lines of the failed process:\n%s", exc.detail)
    log.error("%s", exc)  # last, so that it is the pod log's last line of ours
    if reporter is not None:
        reporter.report("Deployment failed", str(exc))
    return exc.exit_code
