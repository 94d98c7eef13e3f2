"""Optional hook of this custom model. The environment fetches `artifact_uri` itself (S3-compatible
stores, GCS, Azure Blob, a hub mirror, http(s) archives, local folders and archives: README,
"Model artifacts"), so most models need no code here and this file defines no hook.

Write `load_model(code_dir)` only for a source the environment does not know. It runs once per
container before vLLM starts (not in every DRUM worker; in a thread of its own, beside the check
of the engine flags), and whatever it puts into `${CODE_DIR}/vllm/` is served instead of
`artifact_uri`, with hub access off. A bad flag or a stop request ends the container while it
runs: it is not waited for. Raise to stop the
deployment: the platform shows your exception (exit code 3). For example, weights that an
internal tool exports:

    import subprocess
    from pathlib import Path

    def load_model(code_dir: str) -> None:
        target = Path(code_dir) / "vllm"
        if not (target / "config.json").is_file():
            subprocess.run(["export-model", "--name", "support-bot", "--out", str(target)], check=True)

The environment provides `score` and `chat`; hooks of those names here are ignored.
"""
