"""vLLM drop-in environment: serve an LLM through DRUM with vLLM's OpenAI server behind it.

One way through stage packages, each importing only those before it (`pipeline` runs them):

- `config/`: every runtime parameter declared once (`settings`), read (`runtime_params`),
  engine_config.json, vLLM's flags (`vllm_flags`), the batch parameters -> `Config`;
- `model/`: the model's load_model hook, which model (`source`), artifact_uri (`artifacts/`),
  the folder read once (`facts`: footprint, LoRA adapters, schema file), pre-flight checks;
- `planning/`: GPUs, the parallel planner, the `LaunchPlan`;
- `launch/`: the supervisor, the vLLM process (its argv and layout, decided with vLLM's
  parser), DRUM, Ray, the children's environments;
- `drum/`: DRUM's hooks in its workers: batch rows, chat.

Shared by all: `errors` (every failure, its exit code and its one handler), `contract` (what
DRUM's workers receive, and the layout vLLM's process reports), `events`, `logs`, `health`.
"""

__version__ = "0.3.0"
