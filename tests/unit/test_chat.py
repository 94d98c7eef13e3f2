"""Chat passthrough details that only show with unusual tokens."""

import json

import pytest
from datarobot_drum.drum.root_predictors.predict_mixin import PredictMixin

from vllm_dropin.adapter.chat import SseSafeChunk


@pytest.mark.parametrize("text", ["a\u2028b", "a\u2029b", "a\x85b", "line\nbreak", "tab\there", "plain"])
def test_streamed_chunks_survive_drums_sse_encoding(text):
    chunk = SseSafeChunk.construct(
        id="c",
        object="chat.completion.chunk",
        created=1,
        model="m",
        choices=[{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    )
    sse = "".join(PredictMixin._stream_openai_chunks([chunk]))  # DRUM's own encoder
    events = [e for e in sse.split("\n\n") if e and e != "data: [DONE]"]
    assert len(events) == 1
    data = "\n".join(line.removeprefix("data: ") for line in events[0].split("\n"))
    assert json.loads(data)["choices"][0]["delta"]["content"] == text
