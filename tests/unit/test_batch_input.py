"""The batch body reader (CSV or JSON records): text stays text, bad input is a one-line 400 that never
echoes the data."""

from __future__ import annotations

import pytest
from datarobot_drum.drum.exceptions import CustomHTTPError

from vllm_dropin.drum.batch_input import ACCEPTED, read_body


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
    assert read_body(body)["promptText"].tolist() == column


@pytest.mark.parametrize(
    "body",
    [
        b'[{"promptText": "a", "n": 1}, {"promptText": "NA"}, {"n": 2}]',
        b'{"data": [{"promptText": "a", "n": 1}, {"promptText": "NA"}, {"n": 2}]}',
        b'  \n[{"promptText": "a", "n": 1}, {"promptText": "NA"}, {"n": 2}]',
    ],
)
def test_json_records_are_read_as_the_platform_sends_them(body):
    frame = read_body(body)
    assert list(frame.columns) == ["promptText", "n"]
    assert frame["promptText"].tolist()[:2] == ["a", "NA"]
    assert frame["promptText"].isna().tolist() == [False, False, True]  # a missing key is a missing prompt


def test_no_records_is_a_422():
    with pytest.raises(CustomHTTPError) as info:
        read_body(b"[]")
    assert info.value.status_code == 422


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", f"request body is empty; {ACCEPTED}"),
        (b"  \n", f"request body is empty; {ACCEPTED}"),
        (
            "promptText\ncafé secret\n".encode("latin-1"),
            "request body is not UTF-8 text (byte 0xe9 at offset 14); save it as UTF-8",
        ),
        (
            "promptText\nx\n".encode("utf-16"),
            "request body is not UTF-8 text (byte 0xff at offset 0); save it as UTF-8",
        ),
        (b"promptText\nsecret\x00\n", "request body holds NUL characters: is it a binary file?"),
        (b'promptText,b\n"secret,1\n', "CSV could not be parsed: Error tokenizing data. C error: EOF inside string"),
        (b"a,b\nsecret,2,3\n", "CSV rows have more fields than the header names"),
        (b'[{"promptText": "secret"', "request body is not valid JSON (line 1 column 25: Expecting ',' delimiter)"),
        (b'{"promptText": ["secret"]}', 'JSON object body has no "data" list of records'),
        (b'["secret"]', "JSON record 0 is str, not an object of column values"),
        (b'{"data": [{"promptText": "a"}, 5]}', "JSON record 1 is int, not an object of column values"),
    ],
)
def test_bad_input_is_a_400_in_one_line_without_the_data(body, message):
    with pytest.raises(CustomHTTPError) as info:
        read_body(body)
    assert info.value.status_code == 400
    text = str(info.value.args[0]) if info.value.args else str(info.value)
    assert text.startswith(message) and "\n" not in text and "secret" not in text
