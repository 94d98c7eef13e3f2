"""DRUM custom-model hooks of the environment (DRUM's --code-dir points here)."""

from vllm_dropin.drum.hooks import chat, get_supported_llm_models, load_model, read_input_data, score

__all__ = ["chat", "get_supported_llm_models", "load_model", "read_input_data", "score"]
