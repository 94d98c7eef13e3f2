"""Side effects: start vLLM and DRUM, wait for them, supervise them, stop them."""
