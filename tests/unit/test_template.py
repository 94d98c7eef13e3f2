"""custom_model_template/ stays true to the parameter declarations and to DRUM's validation."""

from pathlib import Path

import yaml

from vllm_dropin.config.settings import PARAMETERS, metadata_definition

TEMPLATE = Path(__file__).resolve().parents[2] / "custom_model_template"


def test_metadata_declares_every_parameter_as_declared():
    doc = yaml.safe_load((TEMPLATE / "model-metadata.yaml").read_text())
    by_name = {d["fieldName"]: d for d in doc["runtimeParameterDefinitions"]}
    for param in PARAMETERS:
        assert by_name[param.name] == metadata_definition(param), param.name
    assert doc["targetType"] == "textgeneration"


def test_drum_accepts_the_metadata():
    from datarobot_drum.drum.model_metadata import read_model_metadata_yaml

    assert read_model_metadata_yaml(str(TEMPLATE))["targetType"] == "textgeneration"


def test_engine_config_example_is_valid():
    from vllm_dropin.config import engine_config, vllm_flags

    vllm_flags.parse(engine_config.load(TEMPLATE), "engine_config.json")


def test_readme_documents_every_parameter():
    readme = (TEMPLATE.parent / "README.md").read_text()
    for param in PARAMETERS:
        assert f"| `{param.name}` | {param.type}" in readme, param.name
