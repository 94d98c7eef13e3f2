"""Build a random-weight Llama model with a project-trained tokenizer, fully offline.

Tests, the demo and the GPU scripts need a model that vLLM accepts without a model hub. The
tokenizer is a byte-level BPE trained on generated text, so the build is deterministic and
needs nothing but `tokenizers`, `transformers` and `torch` (all in vLLM's own closure).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = [
    "the",
    "a",
    "model",
    "serves",
    "many",
    "prompts",
    "tokens",
    "batch",
    "chat",
    "answer",
    "question",
    "server",
    "engine",
    "fast",
    "slow",
    "cluster",
    "gpu",
    "cpu",
    "memory",
    "cache",
    "request",
    "reply",
    "row",
    "column",
    "data",
    "value",
    "number",
    "text",
    "story",
    "river",
    "mountain",
    "city",
    "light",
    "dark",
    "blue",
    "green",
    "red",
    "small",
    "large",
    "quick",
    "lazy",
    "fox",
    "dog",
    "runs",
    "jumps",
    "over",
    "under",
]

# Sizes: "tiny" for CPU tests (~7 MB), "1b" for GPU runs (0.99B parameters), "8b" Llama-3-8B's
# shape (6.98B parameters with this vocabulary: 14 GB in bf16) for the figures at a real size.
SIZES = {
    "tiny": dict(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=64,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
    ),
    "8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
    ),
}


def _corpus(lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) for _ in range(lines)]


def build_tokenizer(out: Path, vocab_size: int = 2048, seed: int = 0) -> int:
    """Train a byte-level BPE tokenizer and save it in the transformers layout; returns vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(4000, seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return len(fast)


def _printable(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable()


def build_model(
    out: Path, size: str = "tiny", seed: int = 0, device: str = "cpu", max_shard_size: str | None = None
) -> Path:
    """Write config, random weights (safetensors, in files of at most `max_shard_size` when given)
    and tokenizer into `out`; returns `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out, seed=seed)
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    config = LlamaConfig(
        vocab_size=vocab,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        **SIZES[size],
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    # Special tokens (EOS included) and tokens that are not printable ASCII (lone bytes of UTF-8
    # sequences, which a detokenizer holds back) get logit 0, below the best of hundreds of random
    # logits: answers run to max_tokens and are readable gibberish, never blank.
    muted = [i for i in range(vocab) if i < len(SPECIAL_TOKENS) or not _printable(tok.decode([i]))]
    with torch.no_grad():
        model.lm_head.weight[muted] = 0.0
    dtype = torch.float32 if size == "tiny" else torch.bfloat16
    shards = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.to(dtype).save_pretrained(out, safe_serialization=True, **shards)
    (out / "generation_config.json").write_text(
        json.dumps(
            {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the model into")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cpu", help="torch device to initialise weights on")
    parser.add_argument("--max-shard-size", help="largest safetensors file, e.g. 64MB")
    args = parser.parse_args()
    print(build_model(args.out, args.size, device=args.device, max_shard_size=args.max_shard_size))


if __name__ == "__main__":
    main()
