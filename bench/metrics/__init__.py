"""Readers of what a run cost: percentiles, vLLM's own /metrics, process memory."""
