"""vLLM drop-in environment: serve an LLM through DRUM with vLLM's OpenAI server behind it.

Data flow, one module each: runtime params (`parameters`, `runtime_params`) → engine config
(`engine_config`) → vLLM args (`vllm_args`, `model_source`, `plan`) → launch (`launch/`) →
DRUM adapter (`adapter/`).
"""

__version__ = "0.3.0"
