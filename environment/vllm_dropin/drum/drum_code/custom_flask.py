"""DRUM's Flask extension point (custom_flask.init_app): chat errors in OpenAI's shape, and
streamed chats written one whole SSE event at a time."""

import flask

from vllm_dropin.drum import openai_errors, sse


def init_app(app: flask.Flask) -> None:
    openai_errors.init_app(app)
    sse.init_app(app)
