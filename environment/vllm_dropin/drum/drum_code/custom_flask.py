"""DRUM's Flask extension point (custom_flask.init_app): vLLM's other routes relayed, every request
counted and /metrics, chat errors in OpenAI's shape, a client's leaving answered without a
traceback, and streamed chats written one whole SSE event at a time."""

import flask

from vllm_dropin.drum import departure, hooks, observe, openai_errors, relay, sse


def init_app(app: flask.Flask) -> None:
    observe.init_app(app, hooks.loaded)
    relay.init_app(app, hooks.loaded)
    openai_errors.init_app(app)
    departure.init_app(app)
    sse.init_app(app)
