"""Benchmarks: figures and ratios side by side in one run (bench/README.md).

- `scenarios/`: one module per question, each `python -m bench.scenarios.NAME` (`python -m bench`
  runs `paths`): `paths` (every path on one vLLM), `deployments` (one model under several
  configurations), `relay` (one DRUM worker's ceiling against a stand-in), `firing` (how fast a
  batch reaches the upstream), `artifacts` (a fetch against boto3 alone), `ray_proof` (two Ray
  nodes), `offline` (vLLM's `LLM.chat`, run by `paths` in its own process), `surface` (vLLM's
  own `vllm bench serve` through DRUM and direct), `counting` and `sending` (what counting, the
  rows budget and the client watch cost in-process), `sharing` (concurrent batches on one
  budget, an abandoned one), `store_adapters` (adapters from lora_adapters_uri against shipped);
- `drivers/`: the clients that load a path (`predictions`: a CSV through DRUM; `openai_client`;
  `chats`: the raw chat driver; `sse`: the one SSE reader);
- `metrics/`: `percentiles` (the one percentile), `engine_metrics` (vLLM's /metrics),
  `memory` (processes, their memory and CPU), `profiles` (py-spy);
- `servers`, `standin` (the instant stand-in, named as such wherever it is used), `workload`
  (prompts and results), `adapters` (LoRA adapters without peft), `report` (the one report).
"""
