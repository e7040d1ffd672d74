"""finetune.max_length against the model's positions: a learned table too short is a clear
error before training; a rotary model's config is raised to the length it was trained on."""

from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers import (
    classify_section,
    local_encoder,
    tiny_bart_config,
    tiny_bert,
    tiny_modernbert,
    write_csv,
)

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.models.positions import fit_positions, position_table_size


def test_a_max_length_past_bert_positions_fails_naming_the_field(tmp_path, capsys):
    docs = load_builtin("bbc-news", limit=30)
    train = write_csv(tmp_path / "train.csv", docs[:24])
    test = write_csv(tmp_path / "test.csv", docs[24:])
    base = local_encoder(tmp_path / "base", [d.text for d in docs])  # 64 positions
    section = classify_section(base, train, test, method="full", max_length=128)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"name": "ft", "finetune": section}))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "finetune.max_length: 128 tokens" in err and "holds 64" in err
    assert "internal error" not in err


def test_prompt_tuning_counts_its_virtual_tokens_in_max_length(tmp_path):
    """Prompt tuning prepends its virtual tokens to the input: at max_length = the table size,
    texts are cut to leave them room, in training, evaluation and serving alike (it was an
    index error in BERT's position embedding)."""
    from lmforge.serve.loader import load_served
    from lmforge.serve.runners import classify

    docs = load_builtin("bbc-news", limit=30)
    train = write_csv(tmp_path / "train.csv", docs[:24])
    test = write_csv(tmp_path / "test.csv", docs[24:])
    base = local_encoder(tmp_path / "base", [d.text for d in docs])  # 64 positions
    section = classify_section(
        base, train, test, method="prompt", max_length=64, method_config={"num_virtual_tokens": 8}
    )
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"name": "ft", "finetune": section}))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 0
    served = load_served(tmp_path / "run")
    (result,) = classify(served, [docs[0].text * 3])  # far longer than 56 tokens
    assert result["label"] in served.labels


def test_table_sizes_of_bert_gpt2_roberta_and_bart():
    from transformers import (
        BartModel,
        GPT2Config,
        GPT2LMHeadModel,
        RobertaConfig,
        RobertaModel,
    )

    assert position_table_size(tiny_bert()) == 64
    gpt2 = GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=48, vocab_size=50)
    )
    assert position_table_size(gpt2) == 48
    roberta = RobertaModel(
        RobertaConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=66,
            pad_token_id=1,
        )
    )
    assert position_table_size(roberta) == 64  # positions start after the padding index
    bart = BartModel(tiny_bart_config(vocab_size=50, max_position_embeddings=48))
    assert position_table_size(bart) == 48  # both sides, after BART's offset of 2
    assert position_table_size(tiny_modernbert()) is None  # RoPE: no table


def test_bert_within_its_table_is_left_as_is():
    model = tiny_bert()
    fit_positions(model, 64)
    assert model.config.max_position_embeddings == 64
    with pytest.raises(LmforgeError, match="at most 64"):
        fit_positions(model, 65)


def test_rotary_config_grows_to_the_trained_length_and_round_trips(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = tiny_modernbert()  # max_position_embeddings 64, plain RoPE
    fit_positions(model, 128)
    assert model.config.max_position_embeddings == 128
    model.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert again.config.max_position_embeddings == 128
    ids = torch.randint(3, 100, (1, 100))
    with torch.no_grad():  # positions past the old 64 give the same logits before and after
        assert torch.allclose(
            model.eval()(input_ids=ids).logits, again.eval()(input_ids=ids).logits
        )
    fit_positions(again, 32)  # never shrinks
    assert again.config.max_position_embeddings == 128


def test_scaled_rope_keeps_its_configured_length():
    config = SimpleNamespace(
        max_position_embeddings=64, rope_parameters={"rope_type": "yarn", "factor": 2.0}
    )
    model = torch.nn.Module()
    model.config = config
    fit_positions(model, 256)
    assert config.max_position_embeddings == 64  # yarn's maths reads it
