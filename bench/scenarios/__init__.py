"""Scenarios, one module each, named for what they measure; each runs as `python -m bench.scenarios.NAME`."""
