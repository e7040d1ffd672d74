"""Instruction tuning on real ChatterBot pairs: data, prompt masking, templates, generation,
the retrieval baseline and the finetune stage with a tiny Llama."""

import json

import pytest
import torch
import yaml
from helpers import instruction_section, tiny_bart_config, trained_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.core.errors import DataError, LmforgeError
from lmforge.data.builtin import DATASETS, load_builtin
from lmforge.data.document import Document
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.train import fit
from lmforge.tasks import TASKS
from lmforge.tasks.generation import decode, greedy_generate
from lmforge.tasks.instruction import (
    InstructionInfo,
    chat_format,
    collate,
    lay_out,
    response_nll,
    retrieval_replies,
)

TASK = TASKS.get("instruction")
EN = InstructionInfo("en")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def cfg(**kw):
    return FinetuneConfig(task="instruction", model={"path": "smollm2-135m"}, **kw)


@pytest.fixture(scope="module")
def pairs():
    return load_builtin("chit-chat-en", limit=300)  # categories interleaved


@pytest.fixture(scope="module")
def bpe(pairs):
    """A byte-level BPE tokenizer trained on the pairs: no chat template, pad != eos."""
    return trained_tokenizer([d.text + "\n" + d.label for d in pairs], "bpe", 600, 256)


@pytest.fixture(scope="module")
def chatml(pairs):
    texts = [d.text + "\n" + d.label for d in pairs]
    tok = trained_tokenizer(
        texts, "bpe", 600, 256, extra_special_tokens=["<|im_start|>", "<|im_end|>"]
    )
    tok.chat_template = CHATML
    return tok


def tiny_llama(tokenizer, seed=0, hidden=64):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


# ---------------------------------------------------------------- data


def test_chit_chat_builtins_are_consecutive_pairs_without_repeats(pairs):
    docs = load_builtin("chit-chat-en")
    assert len(docs) == 1176 and len({d.meta["category"] for d in docs}) == 21
    keyed = [(d.text, d.label) for d in docs]
    assert len(set(keyed)) == len(keyed)  # tech_support's 1,050 repeats collapse
    # a multi-turn conversation gives one pair per consecutive turn (ChatterBot's ListTrainer)
    by_pair = dict.fromkeys(keyed)
    assert ("Good morning, how are you?", "I am doing well, how about you?") in by_pair
    assert ("I am doing well, how about you?", "I'm also good.") in by_pair
    # one prompt with different replies is real data: every reply kept
    assert len({d.label for d in docs if d.text == "Tell me a joke"}) > 1
    assert len({d.meta["category"] for d in pairs[:42]}) == 21  # limit samples every topic
    zh = load_builtin("chit-chat-zh")
    assert len(zh) == 550 and all(d.meta["source"] == "chit-chat-zh" for d in zh)
    assert sum("\u4e00" <= c <= "\u9fff" for d in zh for c in d.label) > 5000
    assert DATASETS.get("chit-chat-en").licence.startswith("BSD-3-Clause")


def test_data_stage_dedups_pairs_not_prompts():
    from lmforge.data.config import DataConfig
    from lmforge.data.pipeline import PipelineStats, dedup_docs

    docs = [Document("hi", label="hello"), Document("hi", label="hello"), Document("hi", "hey")]
    data_cfg = DataConfig(sources=[{"builtin": "chit-chat-en"}], dedup={"near": False})
    kept = dedup_docs(docs, data_cfg, PipelineStats(), seed=0)
    assert [d.label for d in kept] == ["hello", "hey"]


def test_missing_replies_are_rejected_with_their_rows():
    with pytest.raises(DataError, match=r"2 'test' rows have no reply.*rows \[1, 2\]"):
        TASK.prepare(
            {
                "train": [Document("a", label="b")],
                "test": [Document("a", label="b"), Document("c"), Document("d", label=" ")],
            }
        )
    assert TASK.prepare({"train": load_builtin("chit-chat-zh", limit=50)}).language == "zh"


# ---------------------------------------------------------------- encoding


def test_plain_template_masks_the_prompt_and_keeps_the_reply_and_eos(bpe):
    fmt = chat_format(bpe)
    assert fmt.template == "plain" and fmt.stop_ids == [bpe.eos_token_id]
    docs = [Document("What is AI?", label="A branch of science."), Document("Hi", label="Hello")]
    enc = TASK.encode(bpe, docs, EN, cfg(), "train")
    for doc, f in zip(docs, enc.features, strict=True):
        n_prompt = sum(label == -100 for label in f["labels"])
        assert f["labels"][:n_prompt] == [-100] * n_prompt  # masked: exactly the prompt prefix
        assert f["labels"][n_prompt:] == f["input_ids"][n_prompt:]
        assert f["prompt"] == f["input_ids"][:n_prompt]
        assert bpe.decode(f["input_ids"][:n_prompt]).endswith(
            f"### Instruction:\n{doc.text}\n\n### Response:\n"
        )
        reply = f["input_ids"][n_prompt:]
        assert reply[-1] == bpe.eos_token_id and bpe.decode(reply[:-1]) == doc.label
    # padding gets no loss, even where the pad id is EOS (GPT-2-style tokenizers)
    b = collate(pad_id=bpe.eos_token_id)(enc.features)
    short = len(enc.features[1]["input_ids"])
    assert b["input_ids"][1, short:].eq(bpe.eos_token_id).all()
    assert b["labels"][1, short - 1] == bpe.eos_token_id
    assert (b["labels"][1, short:] == -100).all() and (b["attention_mask"][1, short:] == 0).all()


def test_chat_template_is_used_when_the_tokenizer_has_one(chatml):
    fmt = chat_format(chatml)
    end = chatml.convert_tokens_to_ids("<|im_end|>")
    assert fmt.template == "chat" and fmt.end == [end]
    assert fmt.stop_ids == sorted([end, chatml.eos_token_id])  # end of turn, and EOS too
    doc = Document("Do you like music?", label="I like seeing movies.")
    f = TASK.encode(chatml, [doc], EN, cfg(), "train").features[0]
    user = [{"role": "user", "content": doc.text}]
    rendered = chatml.apply_chat_template(
        [*user, {"role": "assistant", "content": doc.label}], tokenize=False
    )
    assert chatml.decode(f["input_ids"]) == rendered.removesuffix("\n")
    gen_prompt = chatml.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert chatml.decode(f["prompt"]) == gen_prompt
    kept = [t for t in f["labels"] if t != -100]
    assert chatml.decode(kept) == doc.label + "<|im_end|>"  # the reply and its end of turn


def test_truncation_cuts_the_prompt_first_and_is_counted(bpe):
    fmt = chat_format(bpe)
    room = 40 - len(fmt.head) - len(fmt.middle)
    turn, reply = list(range(100, 160)), list(range(200, 210))
    ids, n_prompt, prompt, cut = lay_out(fmt, turn, reply, 40)
    assert cut and len(ids) == 40 and ids[-11:] == [*reply, bpe.eos_token_id]  # reply intact
    assert len(prompt) == len(fmt.head) + room + len(fmt.middle)  # prompt alone: cut to fit
    # a very long reply: the prompt keeps a quarter of the room, the reply loses its end
    ids, n_prompt, _, cut = lay_out(fmt, turn, list(range(200, 300)), 40)
    assert cut and len(ids) == 40 and n_prompt == len(fmt.head) + room // 4 + len(fmt.middle)
    docs = [Document("word " * 80, label="ok"), Document("short", label="ok")]
    assert TASK.encode(bpe, docs, EN, cfg(max_length=40), "train").truncated == 1
    with pytest.raises(LmforgeError, match="max_length=8 leaves no room"):
        TASK.encode(bpe, docs, EN, cfg(max_length=8), "train")


def test_encoders_and_encoder_decoders_are_refused(tmp_path):
    from transformers import BartForConditionalGeneration, BertConfig, BertModel

    small = {"vocab_size": 50, "max_position_embeddings": 32}
    BertModel(
        BertConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            **small,
        )
    ).save_pretrained(tmp_path / "bert")
    BartForConditionalGeneration(tiny_bart_config(**small)).save_pretrained(tmp_path / "bart")
    with pytest.raises(LmforgeError, match=r"finetune.model: .*bert is an encoder \('bert'\)"):
        TASK.load_model(tmp_path / "bert", EN)
    with pytest.raises(LmforgeError, match=r"an encoder-decoder \('bart'\).*decoder-only"):
        TASK.load_model(tmp_path / "bart", EN)


# ---------------------------------------------------------------- generation


def test_generation_stops_at_stop_tokens_and_respects_the_context():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=20, n_embd=16, n_layer=1, n_head=2, n_positions=16)
    )
    with torch.no_grad():  # zero final norm: every logit is 0, so greedy always picks token 0
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17]]
    out = greedy_generate(model, prompts, pad_id=1, stop_ids=[0], max_new_tokens=5)
    assert out.ids == [[], []] and out.stopped == [True, True]
    out = greedy_generate(model, prompts, pad_id=1, stop_ids=[3], max_new_tokens=20)
    # the 10-token prompt caps the batch at 16 - 10 = 6 new tokens (GPT-2's learned positions)
    assert out.ids == [[0] * 6, [0] * 6] and out.stopped_fraction == 0.0
    with pytest.raises(LmforgeError, match="empty prompts"):
        greedy_generate(model, [[]], pad_id=1, stop_ids=[0], max_new_tokens=2)


def test_a_tiny_llama_learns_real_pairs_and_generates_replies(pairs, bpe):
    train_docs = [d for d in pairs if len(d.label) < 80][:32]
    model = tiny_llama(bpe)
    config = cfg(max_length=64, batch_size=8, generation_max_tokens=32)
    train = TASK.encode(bpe, train_docs, EN, config, "train")
    before = response_nll(model, train, 16)
    fit(model, train, None, epochs=30, lr=5e-3, batch_size=8, warmup_ratio=0.05)
    after = response_nll(model, train, 16)
    assert after < 0.3 * before, (before, after)
    replies = TASK.predict(model, train, bpe, EN, config)
    assert len(replies) == 32 and all(isinstance(r, str) for r in replies)
    assert replies.stopped_fraction > 0.7  # it learned to end its turn with EOS
    scores = TASK.metrics(train.references, replies, EN)
    assert scores["chrf"] > 50 and scores["perplexity"] == pytest.approx(
        torch.tensor(after).exp().item(), rel=1e-4
    )
    # left padding: a batch generates exactly what each prompt generates alone
    prompts = [f["prompt"] for f in train.features[:6]]
    stop = chat_format(bpe, quiet=True).stop_ids
    batched = greedy_generate(
        model, prompts, pad_id=bpe.pad_token_id, stop_ids=stop, max_new_tokens=12
    )
    alone = [
        greedy_generate(model, [p], pad_id=bpe.pad_token_id, stop_ids=stop, max_new_tokens=12)
        for p in prompts
    ]
    assert batched.ids == [a.ids[0] for a in alone]
    assert decode(bpe, batched.ids)[0] == replies[0][: len(decode(bpe, batched.ids)[0])]


# ---------------------------------------------------------------- baseline


def test_retrieval_baseline_answers_with_the_nearest_training_reply():
    docs = load_builtin("chit-chat-en")
    train, test = docs[:1000], docs[1000:]
    got = retrieval_replies([d.text for d in train], [d.label for d in train], ["what is ai"])
    assert got == [next(d.label for d in train if d.text == "What is AI?")]
    base = TASK.baseline({"train": train, "test": test}, EN)
    assert base["method"] == "tfidf-retrieval" and 0 < base["chrf"] < 100
    zh = load_builtin("chit-chat-zh")
    got = retrieval_replies([d.text for d in zh], [d.label for d in zh], [zh[3].text + "?"])
    assert got == [zh[3].label] or zh[3].text in {d.text for d in zh[:3]}


# ---------------------------------------------------------------- the stage


def test_finetune_stage_from_files_trains_lora_merges_and_reloads(tmp_path, pairs, chatml):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.cli import main

    base = tmp_path / "base"
    tiny_llama(chatml, hidden=32).save_pretrained(base)
    chatml.save_pretrained(base)
    section = instruction_section(
        base, tmp_path, pairs[:40], pairs[280:290], generation_max_tokens=8, merge=True
    )
    recipe = {"name": "chat", "finetune": section}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out)]) == 0
    m = json.loads((out / "summary.json").read_text())["stages"]["finetune"]["metrics"]
    assert {"bleu", "chrf", "perplexity", "stopped_fraction"} <= set(m)
    assert m["baseline"]["method"] == "tfidf-retrieval" and "chrf_vs_baseline" in m
    assert m["merge_max_abs_diff"] < 1e-4 and m["trainable_params"] < m["total_params"]
    rows = [
        json.loads(x) for x in (out / "finetune" / "predictions.jsonl").read_text().split("\n") if x
    ]
    assert len(rows) == 10 and rows[0]["reference"] == pairs[280].label
    assert all(isinstance(r["prediction"], str) for r in rows)

    # both artefacts load in plain transformers / peft and agree
    tok = AutoTokenizer.from_pretrained(out / "finetune" / "merged")
    assert tok.chat_template  # the template travels with the model
    merged = AutoModelForCausalLM.from_pretrained(out / "finetune" / "merged").eval()
    adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base), out / "finetune" / "model"
    ).eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Hello"}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.no_grad():
        diff = (merged(ids).logits - adapter(input_ids=ids).logits).abs().max().item()
    assert diff < 1e-4


@pytest.mark.slow
def test_smollm2_chat_template_masks_its_system_prompt_and_turn():
    from lmforge.models import resolve_model_path
    from lmforge.tasks.base import load_tokenizer

    tok = load_tokenizer(resolve_model_path("smollm2-135m"))  # converted once (~20 s), cached
    fmt = chat_format(tok)
    assert fmt.template == "chat" and fmt.stop_ids == [tok.convert_tokens_to_ids("<|im_end|>")]
    doc = Document("What is AI?", label="Artificial Intelligence.")
    f = TASK.encode(tok, [doc], EN, cfg(), "train").features[0]
    n_prompt = f["labels"].count(-100)
    assert "You are a helpful AI assistant named SmolLM" in tok.decode(f["input_ids"][:n_prompt])
    assert tok.decode(f["input_ids"][n_prompt:]) == "Artificial Intelligence.<|im_end|>"
    assert (
        f["prompt"]
        == tok.apply_chat_template(
            [{"role": "user", "content": doc.text}], add_generation_prompt=True
        )["input_ids"]
    )
