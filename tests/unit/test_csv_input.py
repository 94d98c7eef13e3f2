"""The batch CSV reader: text stays text, bad input is a one-line 400 that never echoes the data."""

from __future__ import annotations

import pytest
from datarobot_drum.drum.exceptions import CustomHTTPError

from vllm_dropin.adapter.csv_input import read_csv


@pytest.mark.parametrize(
    ("body", "column"),
    [
        (b"promptText\nNA\nnull\nNaN\n", ["NA", "null", "NaN"]),  # words, not missing values
        (b"promptText\n\n\n", ["", ""]),  # blank lines are rows with empty prompts (named later)
        (b'promptText,n\nhello,1\n"",2\n', ["hello", ""]),
        (b"promptText,n\na,1\n\nb,2\n", ["a", "", "b"]),  # a blank line is kept as a row, never skipped
        ("\ufeffpromptText\ncafé ☕\n".encode(), ["café ☕"]),  # UTF-8 with a BOM
        (b'promptText\n"a, b\nand c"\n', ["a, b\nand c"]),
        (b"promptText\n", []),
    ],
)
def test_prompts_are_read_as_text(body, column):
    assert read_csv(body)["promptText"].tolist() == column


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "request body is empty: send a CSV whose header names the prompt column"),
        (b"  \n", "request body is empty: send a CSV whose header names the prompt column"),
        (
            "promptText\ncafé secret\n".encode("latin-1"),
            "CSV is not UTF-8 text (byte 0xe9 at offset 14); save it as UTF-8",
        ),
        ("promptText\nx\n".encode("utf-16"), "CSV is not UTF-8 text (byte 0xff at offset 0); save it as UTF-8"),
        (b"promptText\nsecret\x00\n", "CSV holds NUL characters: is it a binary file?"),
        (b'promptText,b\n"secret,1\n', "CSV could not be parsed: Error tokenizing data. C error: EOF inside string"),
        (b"a,b\nsecret,2,3\n", "CSV rows have more fields than the header names"),
    ],
)
def test_bad_input_is_a_400_in_one_line_without_the_data(body, message):
    with pytest.raises(CustomHTTPError) as info:
        read_csv(body)
    assert info.value.status_code == 400
    text = str(info.value.args[0]) if info.value.args else str(info.value)
    assert text.startswith(message) and "\n" not in text and "secret" not in text
