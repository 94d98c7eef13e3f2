"""vLLM drop-in environment: serve an LLM through DRUM with vLLM's OpenAI server behind it.

Data flow, one module each: `settings` (every runtime parameter, declared once) → `runtime_params`
(read into one `Settings`) + `engine_config` + `user_hook` (the model's load_model) →
`prepare` → `plan` (`model_source`; one LaunchPlan, pure) → `launch/` (supervisor, vLLM process:
`vllm_command` with `vllm_flags`, vLLM's parser; DRUM) → `contract` (what DRUM workers receive)
→ `adapter/` (DRUM's hooks). `errors` maps every failure to an exit code.
"""

__version__ = "0.3.0"
