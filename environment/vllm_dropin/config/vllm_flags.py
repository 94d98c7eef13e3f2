"""Understand `vllm serve` flags with the installed vLLM's own argument parser.

We never keep our own list of vLLM flags: the parser that `vllm serve` itself uses tells which
flags exist, which destination each spelling sets (`--max-model-len 512`, `--max_model_len=512`,
`-tp 2` ...), and whether values have the right type. Unknown flags get a "did you mean".
"""

from __future__ import annotations

import argparse
import difflib
from functools import cache
from typing import Any

from vllm_dropin.config.settings import PARAMETERS, Settings
from vllm_dropin.errors import ConfigError

# Flags the environment owns: it binds vLLM to loopback on a free port with a deployment key.
MANAGED_DESTS = {
    "host": "vLLM listens on 127.0.0.1 only; DRUM is the public endpoint",
    "port": "the environment picks a free port for vLLM",
    "uds": "the environment talks to vLLM over TCP on loopback",
    "api_key": "the environment sets a random deployment key",
}

_UNSET = object()


class ParserError(Exception):
    """Raised instead of argparse's print-and-exit."""


@cache
def serve_parser() -> argparse.ArgumentParser:
    """The parser of `vllm serve` from the installed vLLM, raising instead of exiting."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    class RaisingParser(FlexibleArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            raise ParserError(message)

        def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
            raise ParserError(message or "help and version flags are not allowed here")

        def print_help(self, file=None) -> None:  # --help: no output, exit() raises right after
            return None

    root = RaisingParser(prog="vllm")
    return ServeSubcommand().subparser_init(root.add_subparsers())


def option_strings() -> list[str]:
    return sorted(serve_parser()._option_string_actions)


def dest_of(flag: str) -> str:
    """The argparse destination a flag spelling sets, e.g. '-tp' -> 'tensor_parallel_size'."""
    action = serve_parser()._option_string_actions.get(flag)
    if action is None:
        raise KeyError(flag)
    return action.dest


def dest_of_token(token: str) -> str | None:
    """Destination of a flag token as written (`--max_model_len=5`, `-tp`), None if unknown."""
    name = token.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    action = serve_parser()._option_string_actions.get(name)
    return action.dest if action else None


def _suggest(message: str) -> str:
    """Add a 'did you mean' for each unknown flag in an argparse 'unrecognized arguments' error."""
    if not message.startswith("unrecognized arguments:"):
        return message
    hints = []
    for token in message.split(":", 1)[1].split():
        if not token.startswith("-"):
            continue
        name = token.split("=", 1)[0].split(".", 1)[0].replace("_", "-")
        close = difflib.get_close_matches(name, option_strings(), n=1, cutoff=0.6)
        hints.append(f"{token.split('=', 1)[0]} (did you mean {close[0]}?)" if close else token.split("=", 1)[0])
    return "unknown vLLM flag " + ", ".join(hints) if hints else message


def parse(args: list[str], source: str) -> dict[str, Any]:
    """Destinations explicitly set by `args` and their parsed values, or ConfigError naming `source`.

    Parsing into a namespace pre-filled with a sentinel leaves every destination the args did
    not touch at the sentinel, whatever spelling, alias or `=` form the user chose.
    """
    parser = serve_parser()
    namespace = argparse.Namespace(**{a.dest: _UNSET for a in parser._actions})
    try:
        parser.parse_args(list(args), namespace=namespace)
    except ParserError as exc:
        raise ConfigError(f"{source}: {_suggest(str(exc).strip())}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    explicit = {
        dest: value
        for dest, value in vars(namespace).items()
        if value is not _UNSET and not (dest == "model_tag" and value is None)
    }
    for dest, why in MANAGED_DESTS.items():
        if dest in explicit:
            raise ConfigError(f"{source}: --{dest.replace('_', '-')} cannot be set: {why}")
    return explicit


def from_parameters(settings: Settings) -> dict[str, list[str]]:
    """Runtime parameter -> the `vllm serve` flag (and value) it sets; engine_config.json's flags win."""
    flags: dict[str, list[str]] = {}
    for param in PARAMETERS:
        value = getattr(settings, param.name)
        if param.vllm_flag is None or value is None or value is False:
            continue
        flags[param.name] = [param.vllm_flag] if value is True else [param.vllm_flag, str(value)]
    return flags


def long_flag(args: list[str], dest: str) -> object:
    """The value engine flags give `dest` in a long spelling (`--a-b X`, `--a_b=X`; True for a bare
    switch), None when absent: for the pre-flight checks of the model folder, which run in the
    supervisor without vLLM's parser (its import takes seconds)."""
    found: object = None
    for i, token in enumerate(args):
        if not token.startswith("--"):
            continue
        name, eq, value = token[2:].partition("=")
        if name.replace("-", "_") != dest:
            continue
        if eq:
            found = value
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            found = args[i + 1]
        else:
            found = True
    return found


def split_model(args: list[str]) -> tuple[str | None, list[str]]:
    """Take `--model X` / `--model=X` out of args (vLLM wants the model positional)."""
    rest: list[str] = []
    model = None
    tokens = iter(args)
    for token in tokens:
        if token == "--model":
            model = next(tokens, None)
        elif token.startswith("--model="):
            model = token.split("=", 1)[1]
        else:
            rest.append(token)
    return model, rest
