"""DRUM's Flask extension point (custom_flask.init_app): chat errors in OpenAI's shape."""

from vllm_dropin.adapter.openai_errors import init_app

__all__ = ["init_app"]
