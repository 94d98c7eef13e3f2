"""Prompt templates over a row's columns: `Classify: {review text}`, `{{` and `}}` for literal braces.

Any column name works inside the braces (spaces, dots, colons: the whole text between the braces
is the name), unlike str.format. Parsed once at startup (errors name the character) and once per
DRUM worker; rendering a row is a join.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class TemplateError(ValueError):
    """The template text is malformed; the message names the character."""


@dataclass(frozen=True)
class Template:
    parts: tuple[str | tuple[str], ...]  # literal text, or (column name,)

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(part[0] for part in self.parts if isinstance(part, tuple)))

    def render(self, row: Mapping[str, Any]) -> str:
        return "".join(part if isinstance(part, str) else cell_text(row[part[0]]) for part in self.parts)


def cell_text(value: Any) -> str:
    """A cell as prompt text: strings as they are, whole numbers without '.0', lists and objects as JSON."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def empty(value: Any) -> bool:
    """A missing or blank cell: it cannot fill a placeholder."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def parse(text: str) -> Template:
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text[i + 1 : i + 2] == char:  # {{ or }}: a literal brace
            literal.append(char)
            i += 2
        elif char == "}":
            raise TemplateError(f"'}}' at character {i + 1} closes nothing (write '}}}}' for a literal brace)")
        elif char == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise TemplateError(f"'{{' at character {i + 1} is never closed (write '{{{{' for a literal brace)")
            name = text[i + 1 : end]
            if not name.strip() or "{" in name:
                raise TemplateError(f"placeholder at character {i + 1} names no column")
            parts += ["".join(literal), (name,)] if literal else [(name,)]
            literal = []
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    template = Template(tuple(parts))
    if not template.columns:
        raise TemplateError("has no {column} placeholder: every row would get the same prompt")
    return template
