"""vLLM's model infos from the install into cache_dir: what is missing or different is written, what
matches is left, and an install without them changes nothing."""

from __future__ import annotations

from vllm_dropin.launch import model_infos


def _seed(tmp_path):
    seed = tmp_path / "install" / model_infos.FOLDER
    seed.mkdir(parents=True)
    (seed / "llama-LlamaForCausalLM.json").write_text('{"hash": "new"}')
    (seed / "qwen2-Qwen2ForCausalLM.json").write_text('{"hash": "q"}')
    return seed


def test_missing_and_different_infos_are_written_and_matching_ones_left(tmp_path):
    seed, root = _seed(tmp_path), tmp_path / "cache" / "vllm"
    assert model_infos.seed(root, seed) == 2
    target = root / model_infos.FOLDER
    assert (target / "qwen2-Qwen2ForCausalLM.json").read_text() == '{"hash": "q"}'
    (target / "llama-LlamaForCausalLM.json").write_text('{"hash": "old"}')  # an older vLLM's, in a kept cache_dir
    matching = (target / "qwen2-Qwen2ForCausalLM.json").stat().st_mtime_ns
    assert model_infos.seed(root, seed) == 1
    assert (target / "llama-LlamaForCausalLM.json").read_text() == '{"hash": "new"}'
    assert (target / "qwen2-Qwen2ForCausalLM.json").stat().st_mtime_ns == matching
    assert sorted(p.name for p in target.iterdir()) == ["llama-LlamaForCausalLM.json", "qwen2-Qwen2ForCausalLM.json"]


def test_an_install_without_infos_changes_nothing(tmp_path):
    root = tmp_path / "cache" / "vllm"
    assert model_infos.seed(root, tmp_path / "none") == 0
    assert not root.exists()


def test_a_write_that_fails_is_one_warning_and_the_start_goes_on(tmp_path, caplog):
    seed, root = _seed(tmp_path), tmp_path / "cache" / "vllm"
    root.mkdir(parents=True)
    (root / model_infos.FOLDER).write_text("not a folder")
    assert model_infos.seed(root, seed) == 0
    [warning] = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warning.startswith(f"vLLM's model infos not copied into {root / model_infos.FOLDER}: ")
