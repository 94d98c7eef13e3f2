"""DRUM's read_input_data hook: the batch body, CSV or JSON records, read so that bad input is a
clear client error that never repeats the data.

DRUM's own reader answers HTTP 500 to a non-UTF-8 or malformed CSV and echoes the whole request
body (every prompt) into the error and its log; it reads a JSON body as a CSV header. Here:
a CSV with a header row, a JSON list of records, or `{"data": [records]}` (the platform's
prediction API formats); anything else is a 400 naming what is wrong and the accepted formats.
Every cell stays text: a prompt "NA" or "null" is a prompt, not a missing value; an empty cell
or a blank line is a row with an empty prompt, which the batch names (never silently skipped).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
from datarobot_drum.drum.exceptions import CustomHTTPError

ACCEPTED = 'send a CSV with a header row, a JSON list of records [{"column": "text"}], or {"data": [records]}'


def _bad(message: str) -> CustomHTTPError:
    return CustomHTTPError(f"{message}; {ACCEPTED}", status_code=400)


def read_body(binary: bytes) -> pd.DataFrame:
    if not binary.strip():
        raise _bad("request body is empty")
    try:
        text = binary.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CustomHTTPError(
            f"request body is not UTF-8 text (byte 0x{binary[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            status_code=400,
        ) from None
    if "\0" in text:
        raise _bad("request body holds NUL characters: is it a binary file?")
    if text.lstrip()[:1] in ("[", "{"):
        return read_json(text)
    return read_csv(text)


def read_csv(text: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(f"CSV could not be parsed: {reason}") from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas made the extra first fields an index
        raise _bad("CSV rows have more fields than the header names")
    return frame


def _records_of(document: Any) -> list[Any]:
    if isinstance(document, dict):
        if not isinstance(document.get("data"), list):
            raise _bad('JSON object body has no "data" list of records')
        document = document["data"]
    for i, record in enumerate(document):
        if not isinstance(record, dict):
            raise _bad(f"JSON record {i} is {type(record).__name__}, not an object of column values")
    return document


def read_json(text: str) -> pd.DataFrame:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"request body is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    records = _records_of(document)
    if not records:
        raise CustomHTTPError("the JSON body holds no records: nothing to predict", status_code=422)
    columns = list(dict.fromkeys(key for record in records for key in record))
    return pd.DataFrame.from_records(records, columns=columns).astype(object)
