"""`lmforge generate` under guards: a banned phrase never appears, a constrained reply always
matches, and a bad schema file is a clear error."""

from __future__ import annotations

import json
import re

import pytest

from lmforge.cli import main

CORPUS = [
    'Hello world, this is a test. {"name": "bob", "age": 12} 0123456789 the cat sat on the mat'
] * 50


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory):
    """A 1-layer Llama that wants to say "the" at every step (its last residual dimension is a
    constant only the lm_head row of "the" reads), saved as a model directory."""
    import torch
    from helpers import force_next_token, trained_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("lm")
    tok = trained_tokenizer(CORPUS, kind="bpe", vocab_size=300, max_length=256)
    tok.save_pretrained(path)
    (the,) = tok(" the", add_special_tokens=False)["input_ids"]  # one token: "Ġthe"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    force_next_token(model, the, 8.0)
    model.save_pretrained(path)
    return path


def generate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_banned_phrase_never_appears(gpt_dir, capsys):
    code, out, _ = generate(capsys, str(gpt_dir), "--prompt", "the cat", "--seed", "0")
    assert code == 0 and "the" in out.removeprefix("the cat")  # what the model wants to say
    for seed in range(5):
        code, out, err = generate(
            capsys, str(gpt_dir), "--prompt", "the cat", "--ban", "the", "--ban", "cat",
            "--temperature", "1.5", "--top-k", "300", "--max-new-tokens", "40",
            "--seed", str(seed),
        )  # fmt: skip
        assert code == 0, err
        reply = out.removeprefix("the cat")
        assert "the" not in reply.lower() and "cat" not in reply.lower()


def test_a_regex_or_schema_constrained_reply_always_matches(gpt_dir, tmp_path, capsys):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"age": {"type": "integer"}},
                                  "required": ["age"]}))  # fmt: skip
    for seed in range(3):
        code, out, err = generate(
            capsys, str(gpt_dir), "--prompt", "x", "--regex", "[0-9]{3}-[a-z]{2}",
            "--temperature", "1.0", "--max-new-tokens", "20", "--seed", str(seed),
        )  # fmt: skip
        assert code == 0, err
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", out.strip().removeprefix("x")), out
        code, out, err = generate(
            capsys, str(gpt_dir), "--prompt", "x", "--json-schema", str(schema),
            "--temperature", "1.0", "--max-new-tokens", "30", "--seed", str(seed),
        )  # fmt: skip
        assert code == 0, err
        assert isinstance(json.loads(out.strip().removeprefix("x"))["age"], int)


def test_a_bad_schema_file_and_a_gate_without_classes_are_errors(gpt_dir, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = generate(capsys, str(gpt_dir), "--json-schema", str(bad))
    assert code == 1 and "not a readable JSON file" in err
    code, _, err = generate(capsys, str(gpt_dir), "--gate", str(gpt_dir))
    assert code == 1 and "--gate-refuse" in err
