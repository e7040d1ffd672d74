"""Machine translation with an encoder-decoder model (T5, BART, Marian, bert2gpt, ...): the
encoder reads the source sentence, the decoder writes the target. Head:
``AutoModelForSeq2SeqLM``.

Data: ``text_column`` holds the source sentence, ``label_column`` the target sentence (the
built-in ``hk-parallel`` pairs: Chinese -> English). Predictions are greedy decodes of at most
``generation_max_tokens`` tokens, scored with corpus BLEU and chrF (sacrebleu; Chinese targets
are scored per character). The baseline is a translation memory: the target of the most
similar training source, as a CAT tool would suggest it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.data.document import Document
from lmforge.models.presets import ENCODER_DECODER_PRESETS, SEQ2SEQ_PRESETS
from lmforge.tasks.base import TASKS, Encoded, Splits, Task, TaskOptions, pad_sequences
from lmforge.tasks.heads import head_loader

IGNORE_INDEX = -100  # label positions the loss skips (padding)

# EncoderDecoderModel warns on every training forward that transformers 4.12 moved its loss
# (a note for checkpoints older than that, none of which lmforge makes): it would read as a
# problem with the run
warnings.filterwarnings("ignore", "Version v4.12.0 introduces", FutureWarning)


@dataclass(frozen=True)
class PairInfo:
    """What the metrics need to know about the pairs: the target language."""

    target_language: Literal["en", "zh"]

    @classmethod
    def from_documents(cls, docs: list[Document]) -> PairInfo:
        from lmforge.core.text import mostly_cjk

        return cls("zh" if mostly_cjk([d.label for d in docs]) else "en")  # type: ignore[misc]

    @staticmethod
    def check(docs: list[Document], split: str) -> None:
        """Raise naming the rows of ``docs`` without a source text or a target text."""
        no_source = [i for i, d in enumerate(docs) if not d.text.strip()]
        no_target = [
            i for i, d in enumerate(docs) if not isinstance(d.label, str) or not d.label.strip()
        ]
        for rows, field in ((no_source, "source text (text_column)"), (no_target, "target text")):
            if rows:
                raise DataError(
                    f"translation: {len(rows)} '{split}' rows have no {field}, e.g. rows "
                    f"{rows[:5]}; every row needs a source sentence and its translation "
                    "(label_column)"
                )


def prepare(splits: Splits) -> PairInfo:
    for split in ("train", "val", "test"):
        PairInfo.check(splits.get(split) or [], split)
    return PairInfo.from_documents(splits["train"])


def _appends_eos(tokenizer: Any) -> bool:
    """T5/Marian tokenizers end every sequence with EOS themselves; lmforge's BPE does not."""
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id


def token_ids(
    tokenizer: Any, texts: list[str], max_length: int, target: bool = False
) -> tuple[list[list[int]], list[bool]]:
    """Token ids ending in EOS, at most ``max_length`` long, and which texts were cut.

    Targets go through ``text_target=`` so tokenizers with a separate target vocabulary
    (Marian) use it.
    """
    if tokenizer.eos_token_id is None:
        raise LmforgeError(
            "translation needs a tokenizer with an end-of-sequence token (eos_token) so the "
            "decoder learns where a translation stops"
        )
    add_eos = not _appends_eos(tokenizer)
    limit = max_length - add_eos
    kwargs = {"text_target": texts} if target else {"text": texts}
    enc = tokenizer(**kwargs, truncation=True, max_length=limit)
    ids = enc["input_ids"]
    if enc.encodings is not None:  # fast tokenizers keep what truncation cut off
        cut = [bool(e.overflowing) for e in enc.encodings]
    else:
        cut = [len(x) > limit for x in tokenizer(**kwargs)["input_ids"]]
    if add_eos:
        ids = [row + [tokenizer.eos_token_id] for row in ids]
    return ids, cut


def seq2seq_collate(pad_id: int) -> Any:
    """Padded source ids with their mask, and target ids padded with -100 (no loss there)."""

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        ids = pad_sequences([f["input_ids"] for f in features], pad_id)
        mask = pad_sequences([[1] * len(f["input_ids"]) for f in features], 0)
        labels = pad_sequences([f["labels"] for f in features], IGNORE_INDEX)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def encode(
    tokenizer: Any, docs: list[Document], info: PairInfo, options: Any, split: str
) -> Encoded:
    """Source -> ``input_ids``, target -> ``labels``; an example counts as truncated when
    either side was cut to ``max_length``."""
    opts = TaskOptions.of(options)
    PairInfo.check(docs, split)
    sources, cut_source = token_ids(tokenizer, [d.text for d in docs], opts.max_length)
    targets, cut_target = token_ids(
        tokenizer, [d.label for d in docs], opts.max_length, target=True
    )
    if any(cut_target):
        logger.warning(
            "translation: %d of %d '%s' targets are longer than max_length=%d, so the model "
            "learns cut translations; raise finetune.max_length",
            sum(cut_target),
            len(docs),
            split,
            opts.max_length,
        )
    return Encoded(
        [{"input_ids": s, "labels": t} for s, t in zip(sources, targets, strict=True)],
        [d.label for d in docs],
        seq2seq_collate(tokenizer.pad_token_id),
        truncated=sum(a or b for a, b in zip(cut_source, cut_target, strict=True)),
        warnings={"truncated_sources": sum(cut_source), "truncated_targets": sum(cut_target)},
    )


load_model = head_loader("AutoModelForSeq2SeqLM", "translation")


def predict(model: Any, data: Encoded, processor: Any, info: PairInfo, options: Any) -> list[str]:
    """Greedy decodes of the sources, at most ``generation_max_tokens`` each."""
    opts = TaskOptions.of(options)
    from lmforge.tasks.generation import decode, greedy_generate

    out = greedy_generate(
        model,
        [f["input_ids"] for f in data.features],
        pad_id=processor.pad_token_id,
        stop_ids=[processor.eos_token_id],
        max_new_tokens=opts.generation_max_tokens,
        batch_size=opts.batch_size * 2,
    )
    unfinished = len(out.stopped) - sum(out.stopped)
    if unfinished:
        logger.warning(
            "translation: %d of %d translations reached generation_max_tokens=%d before "
            "ending (cut, or a model still repeating itself)",
            unfinished,
            len(out.stopped),
            opts.generation_max_tokens,
        )
    return decode(processor, out.ids)


def metrics(references: list[Any], predictions: list[Any], info: PairInfo) -> dict[str, Any]:
    from lmforge.evaluate.metrics import generation_metrics

    return generation_metrics(predictions, references, language=info.target_language)


def translation_memory(
    train_sources: list[str], train_targets: list[str], queries: list[str]
) -> list[str]:
    """For each query, the target of the most similar training source (cosine similarity of
    TF-IDF character 1-3-grams, which work for Chinese and English alike)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    memory = vectorizer.fit_transform(train_sources)  # rows are L2-normalised
    out: list[str] = []
    for start in range(0, len(queries), 256):  # bounds the (queries x memory) similarity matrix
        sims = vectorizer.transform(queries[start : start + 256]) @ memory.T
        out.extend(train_targets[int(j)] for j in sims.toarray().argmax(axis=1))
    return out


def baseline(splits: Splits, info: PairInfo) -> dict[str, Any]:
    """A translation memory built from the same training pairs, scored like the model."""
    train, test = splits["train"], splits["test"]
    preds = translation_memory(
        [d.text for d in train], [d.label for d in train], [d.text for d in test]
    )
    scores = metrics([d.label for d in test], preds, info)
    return {"method": "translation-memory", "bleu": scores["bleu"], "chrf": scores["chrf"]}


def from_preset(preset: str, info: PairInfo, tokenizer_dir: Path | None) -> tuple[Any, Any]:
    """A freshly initialised encoder-decoder of ``preset`` shape over this run's tokenizer (one
    vocabulary for source and target); initialisation draws from torch's global RNG."""
    from lmforge.tasks.heads import _run_tokenizer

    tokenizer = _run_tokenizer(tokenizer_dir, preset)
    if tokenizer.eos_token_id is None:
        raise LmforgeError(
            f"finetune.model.preset {preset!r}: the run's tokenizer has no eos token"
        )
    _end_with_eos(tokenizer)
    if preset in ENCODER_DECODER_PRESETS:
        return _bert2gpt(ENCODER_DECODER_PRESETS[preset], tokenizer), tokenizer
    return _t5(SEQ2SEQ_PRESETS[preset], tokenizer), tokenizer


def _end_with_eos(tokenizer: Any) -> None:
    """Make the tokenizer end every sequence with EOS, as T5's and Marian's do. The model
    learns from sources that end in EOS (``token_ids``); saved with it, this tokenizer gives a
    plain-transformers user the same input (without EOS a greedy decode drifts into repeats)."""
    from tokenizers.processors import TemplateProcessing

    if _appends_eos(tokenizer):  # its own template already ends with EOS: keep it
        return
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, eos_id)]
    )


def _t5(shape: dict[str, int], tokenizer: Any) -> Any:
    """T5 v1.0; the decoder starts from the pad token, as T5 does."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=len(tokenizer),
        **shape,
        feed_forward_proj="relu",
        dropout_rate=0.1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5ForConditionalGeneration(config)


def _bert2gpt(shape: dict[str, int], tokenizer: Any) -> Any:
    """A ModernBERT encoder + a GPT-2 decoder with cross-attention, as one
    ``EncoderDecoderModel`` (it saves as such and loads with ``AutoModelForSeq2SeqLM``). The
    decoder starts from BOS (EOS when the tokenizer has none), as GPT-2 text starts."""
    from transformers import (
        EncoderDecoderConfig,
        EncoderDecoderModel,
        GPT2Config,
        ModernBertConfig,
    )

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = eos if pad is None else pad
    encoder = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape["hidden"],
        num_hidden_layers=shape["encoder_layers"],
        num_attention_heads=shape["heads"],
        intermediate_size=shape["encoder_intermediate"],
        max_position_embeddings=shape["context"],
        global_attn_every_n_layers=1,  # full attention in every layer: sources are short
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        cls_token_id=bos,
        sep_token_id=eos,
    )
    decoder = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=shape["hidden"],
        n_layer=shape["decoder_layers"],
        n_head=shape["heads"],
        n_positions=shape["context"],
        add_cross_attention=True,
        is_decoder=True,
        attn_pdrop=0.0,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = bos, pad, eos
    config.vocab_size = len(tokenizer)
    return EncoderDecoderModel(config=config)


TASKS.add(
    "translation",
    Task(
        "translation",
        "sequence-to-sequence translation with an encoder-decoder (T5, BART, Marian, bert2gpt)",
        "SEQ_2_SEQ_LM",
        prepare,
        load_model,
        encode,
        predict,
        metrics,
        presets=(*SEQ2SEQ_PRESETS, *ENCODER_DECODER_PRESETS),
        from_preset=from_preset,
        baseline=baseline,
        main_metric="bleu",
    ),
)
