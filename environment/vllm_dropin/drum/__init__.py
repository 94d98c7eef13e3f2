"""DRUM side: the hooks DRUM calls in its workers, talking only to the vLLM the entrypoint started."""
