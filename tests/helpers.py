"""Builders shared by the tests: tokenizers trained on real text, tiny models, CSV files.

Import as ``from helpers import ...`` (``tests/`` is on ``sys.path`` through its conftest).
Every model here is a few thousand parameters: built, trained and saved in well under a second.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def trained_tokenizer(
    texts: list[str],
    kind: str = "wordpiece",
    vocab_size: int = 2000,
    max_length: int = 64,
    **tokenizer_config: Any,
) -> Any:
    """A transformers tokenizer trained by lmforge's tokenizer stage code on ``texts``."""
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import to_transformers, train_tokenizer

    cfg = TokenizerConfig(
        kind=kind, vocab_size=vocab_size, model_max_length=max_length, **tokenizer_config
    )
    return to_transformers(train_tokenizer(cfg, texts), cfg)


def tiny_bert_config(vocab_size: int = 100, **overrides: Any) -> Any:
    """A BERT config of 2 layers x 32 wide (override any field, e.g. ``num_labels=3``)."""
    from transformers import BertConfig

    fields: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    return BertConfig(**{**fields, **overrides})


def tiny_bart_config(**overrides: Any) -> Any:
    """A BART config of 1 + 1 layers x 16 wide (an encoder-decoder with learned positions)."""
    from transformers import BartConfig

    fields: dict[str, Any] = {
        "d_model": 16,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "decoder_ffn_dim": 32,
    }
    return BartConfig(**{**fields, **overrides})


def tiny_bert(head: type | None = None, seed: int = 0, **config: Any) -> Any:
    """A freshly initialised tiny BERT with ``head`` (default: sequence classification)."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return (head or BertForSequenceClassification)(tiny_bert_config(**config))


def tiny_modernbert(seed: int = 0, **config: Any) -> Any:
    """A freshly initialised ModernBERT classifier of tiny_bert's size (pre-LN, RoPE, GeGLU)."""
    import torch
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    fields: dict[str, Any] = {
        "vocab_size": 100,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 48,
        "max_position_embeddings": 64,
        "layer_types": ["full_attention"] * 2,
        **{f"{role}_token_id": i for i, role in enumerate(("pad", "bos", "eos"))},
        "cls_token_id": 1,
        "sep_token_id": 2,
    }
    torch.manual_seed(seed)
    return ModernBertForSequenceClassification(ModernBertConfig(**{**fields, **config}))


def minilm_shaped_classifier() -> Any:
    """A randomly initialised 5-way BERT classifier of all-MiniLM-L6-v2's shape (6 layers,
    384 wide, 12 heads, FFN 1536, BERT's vocabulary): parameter counts at a real size."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        num_labels=5,
    )
    return BertForSequenceClassification(config)


def force_next_token(model: Any, token: int, strength: float) -> None:
    """Make ``token`` the likeliest next token at every position of an untied Llama.

    Dimension 0 of the residual stream becomes a constant (every embedding sets it, no layer
    writes to it), so after the final RMSNorm it is positive, and only that token's LM-head
    row reads it."""
    import torch

    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0] = 0
            layer.mlp.down_proj.weight[0] = 0
        model.lm_head.weight[:, 0] = 0
        model.lm_head.weight[token, 0] = strength


def tiny_llama_dir(
    path: Path, texts: list[str], *, context: int = 512, force_token: int | None = None
) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained on ``texts``, saved without a
    manifest (a plain causal LM); ``force_token``: see ``force_next_token``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    trained_tokenizer(texts, "bpe", 600, 512).save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=600,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
    )
    model = LlamaForCausalLM(config).eval()
    if force_token is not None:
        force_next_token(model, force_token, 50.0)
    model.save_pretrained(path)
    return path


TOY_VOCAB = 10


def toy_blocks() -> Any:
    """64 random 8-token blocks over ``TOY_VOCAB`` (seeded)."""
    import torch

    return torch.randint(0, TOY_VOCAB, (64, 8), generator=torch.Generator().manual_seed(0))


def train_toy(model: Any, cfg: Any, work: Path) -> Any:
    """``pretrain.loop.train`` on ``toy_blocks`` with everything but the model and config
    fixed: one CPU process, seed 0, no resume (the loop's own tests and fault cases)."""
    import torch

    from lmforge.core.distributed import DistInfo
    from lmforge.core.metrics import MetricsLogger
    from lmforge.pretrain.loop import train

    blocks = toy_blocks()

    def batch(idx: Any, seed: int) -> dict[str, Any]:
        return {"input_ids": blocks[idx], "labels": blocks[idx]}

    return train(
        model,
        cfg,
        train_batch=batch,
        val_batch=batch,
        num_train=64,
        num_val=64,
        tokens_per_sample=8,
        work=work,
        device=torch.device("cpu"),
        dist=DistInfo(),
        seed=0,
        metrics=MetricsLogger(work / "m.jsonl"),
        resume=False,
        recipe_hash="h",
    )


# a 1-layer gpt-tiny: the pretraining tests' model (tests/pretrain, tests/reliability)
TINY_GPT = {
    "preset": "gpt-tiny",
    "layers": 1,
    "heads": 2,
    "hidden": 32,
    "intermediate": 64,
    "context": 64,
}


def pretrain_section(**overrides: Any) -> dict[str, Any]:
    """A recipe's pretrain section: ``TINY_GPT`` (CLM) for 12 steps of 4 x 32 tokens,
    evaluated every 6 steps and checkpointed every 3."""
    section = {
        "model": TINY_GPT,
        "objective": "clm",
        "block_size": 32,
        "batch_size": 4,
        "max_steps": 12,
        "warmup_steps": 2,
        "eval_every": 6,
        "eval_batches": 2,
        "checkpoint_every": 3,
        "tensorboard": False,
    }
    return {**section, **overrides}


def local_encoder(path: Path, texts: list[str], vocab_size: int = 2000) -> Path:
    """A model directory as a user would have one: a 1-layer BERT classifier + its tokenizer."""
    tok = trained_tokenizer(texts, vocab_size=vocab_size)  # may hold a few more (the alphabet)
    tok.save_pretrained(path)
    tiny_bert(vocab_size=len(tok), num_hidden_layers=1).save_pretrained(path)
    return path


def write_csv(
    path: Path, docs: Iterable[Any], columns: tuple[str, str] = ("body", "topic"), chars: int = 600
) -> Path:
    """Documents as a labelled CSV file (text cut to ``chars``), the way users bring data."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for d in docs:
            w.writerow([d.text[:chars], d.label])
    return path


# ---------------------------------------------------------------- built-in recipes, tiny
# quickstart at tiny size: 150 articles, a small vocabulary, a 1-layer model for 4 steps
TINY_PRETRAIN = [
    "pretrain.max_steps=4",
    "pretrain.warmup_steps=1",
    "pretrain.eval_every=2",
    "pretrain.eval_batches=1",
    "pretrain.checkpoint_every=4",
    "pretrain.batch_size=4",
    "pretrain.model.layers=1",
    "pretrain.model.hidden=32",
    "pretrain.model.heads=2",
]
TINY_FINETUNE = ["finetune.data.limit=40", "finetune.epochs=1", "finetune.max_length=32"]
# the quickstart's later stages at tiny size: a few examples, one timing repeat
TINY_LATER = [
    "evaluate.latency_repeats=1",
    "evaluate.max_examples=8",
    "compress.max_examples=8",
    "compress.latency_repeats=1",
    "explain.examples=1",
    "explain.attribution={steps: 4, aopc_k: 2, random_runs: 1}",
]
TINY = [
    arg
    for kv in [
        "data.sources.0.limit=150",
        "tokenizer.vocab_size=600",
        *TINY_PRETRAIN,
        *TINY_FINETUNE,
        *TINY_LATER,
    ]
    for arg in ("--set", kv)
]

# one tiny end-to-end run per built-in recipe: a limit on every source keeps each in seconds
TINY_MODEL = ["pretrain.block_size=32", "pretrain.model.context=64"]
E2E_OVERRIDES = {
    "zero-shot": ["data.sources.0.limit=60", "finetune.max_length=32"],
    "few-shot": [  # MiniLM only (SmolLM2 takes minutes): prototypes and LoRA at k = 0, 2
        "data.sources.0.limit=100",
        "finetune.fewshot.curve=[0, 2]",
        "finetune.fewshot.curve_methods=[in-context, lora]",
        "finetune.fewshot.max_test=8",
        "finetune.fewshot.min_steps=2",
        "finetune.epochs=1",
        "finetune.max_length=32",
    ],
    "translate": [
        "data.sources.0.limit=300",
        "tokenizer.vocab_size=600",
        *TINY_FINETUNE,
        "finetune.generation_max_tokens=8",
    ],
    "classify-bbc": [
        "data.sources.0.limit=150",
        *TINY_FINETUNE,
        "evaluate.latency_repeats=1",
        "evaluate.max_examples=8",
    ],
    "explain-bbc": [
        "data.sources.0.limit=150",
        *TINY_FINETUNE,
        "explain.examples=1",
        "explain.attribution={steps: 4, aopc_k: 2, random_runs: 1}",
        "explain.attacks={methods: [char, word], max_examples: 2, candidates: 2}",
        "explain.tcav.layers=[layer.0]",
        "explain.tcav.random_runs=2",
        "explain.tcav.random_examples=6",
        "explain.tcav.max_targets=4",
    ],
    "compress-bbc": [
        "data.sources.0.limit=150",
        *TINY_FINETUNE,
        "compress.steps.4.recovery_epochs=0",
        "compress.steps.6.epochs=1",
        "compress.profile=false",
        "compress.max_examples=8",
    ],
    "instruct": [  # a llama-tiny on this run's BPE tokenizer instead of SmolLM2: seconds
        "data.sources.0.limit=150",
        "tokenizer.vocab_size=600",
        "finetune.model={preset: llama-tiny}",
        *TINY_FINETUNE,
        "finetune.generation_max_tokens=8",
    ],
    "quickstart": [
        "data.sources.0.limit=300",
        "tokenizer.vocab_size=1500",
        *TINY_PRETRAIN,
        "pretrain.max_steps=20",
        *TINY_FINETUNE,
        *TINY_LATER,
    ],
    "tokenizer-zh": [
        "data.sources.0.limit=300",
        "data.sources.1.limit=300",
        "tokenizer.vocab_size=1500",
    ],
    "pretrain-gpt-shakespeare": ["data.sources.0.limit=3", *TINY_PRETRAIN, *TINY_MODEL],
    "pretrain-bert-wiki": [
        "data.sources.0.limit=12",
        "tokenizer.vocab_size=1000",
        *TINY_PRETRAIN,
        *TINY_MODEL,
    ],
    "qa": [
        "data.sources.0.limit=60",
        "finetune.data.limit=12",
        "finetune.epochs=1",
        "finetune.max_length=128",
    ],
    "pretrain-zh": [
        "data.sources.0.limit=300",
        "data.sources.1.limit=300",
        "tokenizer.vocab_size=1500",
        *TINY_PRETRAIN,
        *TINY_MODEL,
    ],
    "ner-zh": [
        "data.sources.0.limit=200",
        "data.sources.1.limit=200",
        "tokenizer.vocab_size=1000",
        *TINY_PRETRAIN,
        *TINY_MODEL,
        *TINY_FINETUNE,
    ],
    "sentiment-zh": [
        "data.sources.0.limit=200",
        "data.sources.1.limit=200",
        "tokenizer.vocab_size=1000",
        *TINY_PRETRAIN,
        *TINY_MODEL,
        *TINY_FINETUNE,
    ],
    "vit-digits": [
        "data.sources.0.limit=200",
        "finetune.epochs=1",
        "evaluate.latency_repeats=1",
        "evaluate.max_examples=8",
    ],
}


def instruction_section(
    base: Path, work: Path, train: Iterable[Any], test: Iterable[Any], **overrides: Any
) -> dict[str, Any]:
    """A recipe's finetune section: instruction tuning of ``base`` on (text, label) pairs,
    written as ``work/{train,test}.jsonl`` (instruction, response)."""
    for name, docs in (("train", train), ("test", test)):
        with (work / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"instruction": d.text, "response": d.label}) + "\n")
    return {
        "task": "instruction",
        "method": "lora",
        "model": {"path": str(base)},
        "data": {
            "train": str(work / "train.jsonl"),
            "test": str(work / "test.jsonl"),
            "text_column": "instruction",
            "label_column": "response",
        },
        "epochs": 1,
        "max_length": 64,
        **overrides,
    }


def finetune_section(
    task: str, base: Path, train: Path, test: Path, columns: tuple[str, str], **overrides: Any
) -> dict[str, Any]:
    """A recipe's finetune section: LoRA (query, value) on the encoder ``base`` for ``task``,
    reading the ``columns`` (text, label) of the ``train`` and ``test`` files."""
    text_column, label_column = columns
    return {
        "task": task,
        "method": "lora",
        "model": {"path": str(base)},
        "data": {
            "train": str(train),
            "test": str(test),
            "text_column": text_column,
            "label_column": label_column,
        },
        "epochs": 2,
        "max_length": 64,
        "method_config": {"target_modules": ["query", "value"]},
        **overrides,
    }


def classify_section(base: Path, train: Path, test: Path, **overrides: Any) -> dict[str, Any]:
    """A recipe's finetune section: LoRA classification of ``write_csv`` files on ``base``."""
    return finetune_section("classification", base, train, test, ("body", "topic"), **overrides)


CRF_LABELS = ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER"]


def random_crf_model(tokenizer: Any, path: Path) -> Any:
    """A saved BERT-CRF tagging ``CRF_LABELS``, its emissions and transitions both far from
    uniform, so the Viterbi path differs from per-token argmax and a decoding mistake shows."""
    import torch
    from transformers import BertForTokenClassification

    from lmforge.tasks.crf import CrfTagger

    torch.manual_seed(0)
    config = tiny_bert_config(
        vocab_size=len(tokenizer), num_labels=len(CRF_LABELS), max_position_embeddings=128
    )
    model = BertForTokenClassification(config)
    model.config.id2label = dict(enumerate(CRF_LABELS))
    model.config.label2id = {t: i for i, t in enumerate(CRF_LABELS)}
    model.classifier.weight.data.normal_(0, 0.5)
    tagger = CrfTagger(model, CRF_LABELS)
    with torch.no_grad():
        for p in tagger.crf.parameters():
            p.normal_(0, 2)
    tagger.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return tagger


# ---------------------------------------------------------------- fit() without a transformer
class TensorRows:
    """The data interface ``finetune.train.fit`` needs: a length and index batches of
    ``x`` with ``labels``."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: list[int]) -> dict[str, Any]:
        return {"x": self.x[idx], "labels": self.y[idx]}


def linear_classifier(dims: int, classes: int, seed: int = 0) -> Any:
    """A linear layer with the model interface ``fit`` drives: ``forward(x, labels)`` returns
    the cross-entropy ``loss`` and the ``logits``."""
    from types import SimpleNamespace

    import torch

    class LinearClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(dims, classes)

        def forward(self, x: Any, labels: Any) -> Any:
            logits = self.head(x)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            return SimpleNamespace(loss=loss, logits=logits)

    torch.manual_seed(seed)
    return LinearClassifier()
