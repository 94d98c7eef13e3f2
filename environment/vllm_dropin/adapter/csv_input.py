"""DRUM's read_input_data hook: the batch CSV, read so that bad input is a clear client error.

DRUM's own reader answers HTTP 500 to a non-UTF-8 or malformed CSV and echoes the whole request
body (every prompt) into the error and its log. Here: 400 with one line that names what is wrong
and never repeats the data. Every cell stays text: a prompt "NA" or "null" is a prompt, not a
missing value; an empty cell or a blank line is a row with an empty prompt, which the batch
names (never silently skipped).
"""

from __future__ import annotations

import io

import pandas as pd
from datarobot_drum.drum.exceptions import CustomHTTPError


def read_csv(binary: bytes) -> pd.DataFrame:
    if not binary.strip():
        raise CustomHTTPError("request body is empty: send a CSV whose header names the prompt column", 400)
    try:
        text = binary.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CustomHTTPError(
            f"CSV is not UTF-8 text (byte 0x{binary[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            status_code=400,
        ) from None
    if "\0" in text:
        raise CustomHTTPError("CSV holds NUL characters: is it a binary file?", status_code=400)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CustomHTTPError(f"CSV could not be parsed: {reason}", status_code=400) from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas made the extra first fields an index
        raise CustomHTTPError("CSV rows have more fields than the header names", status_code=400)
    return frame
