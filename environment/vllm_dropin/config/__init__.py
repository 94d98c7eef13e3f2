"""The config stage: runtime parameters and engine_config.json, read and checked into one `Config`.

Pure but for reading engine_config.json. vLLM's parser checks the flags in vLLM's own Python
(`launch.vllm_server.check_flags`), which the pipeline asks for before anything slow.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from vllm_dropin.config import engine_config, vllm_flags
from vllm_dropin.config.batch import settings_for_batch
from vllm_dropin.config.settings import Settings
from vllm_dropin.contract import BatchSettings

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "vllm-dropin-cache"


@dataclass(frozen=True)
class Config:
    """What the deployment is asked to do, before anything is read of the model."""

    code_dir: Path
    settings: Settings
    engine_args: list[str]  # engine_config.json's flags as written; they override param_flags
    param_flags: dict[str, list[str]]  # runtime parameter -> the `vllm serve` flag (and value) it sets
    batch: BatchSettings  # a response_schema file is read by the model stage

    @property
    def engine_model(self) -> str | None:
        """--model in engine_config.json, which wins over every other model source."""
        return vllm_flags.split_model(self.engine_args)[0]

    @property
    def cache_dir(self) -> Path:
        """Where downloads, fetched artifacts and vLLM's compile cache go (runtime parameter 'cache_dir')."""
        return Path(self.settings.cache_dir) if self.settings.cache_dir else DEFAULT_CACHE_DIR


def of(code_dir: Path, settings: Settings, engine_args: list[str]) -> Config:
    """The config from the parameters and engine flags; ConfigError naming the parameter on any problem."""
    return Config(
        code_dir, settings, list(engine_args), vllm_flags.from_parameters(settings), settings_for_batch(settings)
    )


def load(code_dir: Path, settings: Settings) -> Config:
    """The config of a model folder: its engine_config.json read and checked first."""
    return of(code_dir, settings, engine_config.load(code_dir))
