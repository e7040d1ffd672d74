"""Token classification (NER with BIO tags): one tag per input token, scored per entity.
Head: ``AutoModelForTokenClassification``.

Data: ``Document.tokens`` and ``Document.tags``, one tag per token: the built-in
``peoples-daily-ner`` (one paragraph per document, one token per Chinese character), or files
whose ``text_column`` holds a token list and ``label_column`` the tag list.

Each token is a "word" to the tokenizer (``is_split_into_words``); its tag trains the first
sub-token, the rest are ignored (-100), as in BERT's NER recipe. Sequences longer than
``max_length`` are **split into chunks** rather than truncated - a People's Daily paragraph has
72 characters at the median but 442 at the 99th percentile, and truncation at 128 would drop a
quarter of the entities from training and score them as missed. Chunks end after a sentence
end (。！？；) where possible, else after a comma, so an entity is rarely cut; the chunks'
predictions are put back together, so metrics are per example, over every token. Training
rows are packed into full windows (see ``encode``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.data.document import Document
from lmforge.tasks.base import TASKS, Encoded, Splits, Task, TaskOptions, pad_sequences
from lmforge.tasks.classification import ENCODER_PRESETS, logits_in_batches

IGNORE = -100  # label of sub-tokens the loss skips (torch's CrossEntropyLoss ignore_index)
SENTENCE_END = frozenset("。！？；!?;")
CLAUSE_END = frozenset("，、：,:")
PREFIXES = ("B-", "I-", "E-", "S-")  # BIO, plus the E-/S- of IOBES (seqeval reads both)


def _rows(docs: list[Document], idx: list[int]) -> str:
    """``rows [3, 9]`` of the split, plus the documents' ids where they have them and where
    those ids count (a file's records from 0, a corpus's lines): ``(ids ['9'] in dev.jsonl)``."""
    ids = [docs[i].meta.get("id") for i in idx[:5]]
    sources = sorted({str(docs[i].meta["source"]) for i in idx[:5] if docs[i].meta.get("source")})
    shown = f"rows {idx[:5]}" + (" and more" if len(idx) > 5 else "")
    if not all(ids):
        return shown
    return shown + f" (ids {ids}" + (f" in {', '.join(sources)}" if sources else "") + ")"


def _check_annotated(docs: list[Document], split: str) -> None:
    """Every row has tokens and one tag per token, each tag ``O`` or ``<prefix>-<type>``."""
    missing = [i for i, d in enumerate(docs) if d.tokens is None or d.tags is None]
    if missing:
        raise DataError(
            f"token-classification needs tokens and tags on every row; {len(missing)} '{split}' "
            f"{_rows(docs, missing)} have none (the text column must hold a token list and the "
            "label column the tag list, or use the built-in peoples-daily-ner)"
        )
    bad = [i for i, d in enumerate(docs) if len(d.tokens) != len(d.tags)]  # type: ignore[arg-type]
    if bad:
        sizes = [(len(docs[i].tokens), len(docs[i].tags)) for i in bad[:5]]  # type: ignore[arg-type]
        raise DataError(
            f"{len(bad)} '{split}' rows have a different number of tokens and tags: "
            f"{_rows(docs, bad)} with (tokens, tags) = {sizes}; give one tag per token"
        )
    odd = [
        (i, t)
        for i, d in enumerate(docs)
        for t in dict.fromkeys(d.tags or [])
        if t != "O" and not (t[:2] in PREFIXES and len(t) > 2)
    ]
    if odd:
        raise DataError(
            f"{len(odd)} '{split}' tags are not BIO tags (O, B-TYPE, I-TYPE), e.g. "
            f"{_rows(docs, [i for i, _ in odd])} with {[t for _, t in odd[:5]]}"
        )


def invalid_bio(tags: list[str]) -> int:
    """How many ``I-X`` tags follow neither ``B-X`` nor ``I-X`` (seqeval opens an entity there)."""
    bad, prev = 0, "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            bad += 1
        prev = tag
    return bad


@dataclass(frozen=True)
class TagInfo:
    labels: list[str]  # "O" first, then sorted; index = class id

    @classmethod
    def from_documents(cls, docs: list[Document]) -> TagInfo:
        names = {t for d in docs for t in d.tags or []}
        if not names - {"O"}:
            raise DataError(
                "token-classification needs at least one entity tag (B-X/I-X) in the training "
                f"data; it has only {sorted(names) or 'no tags'}"
            )
        return cls(["O", *sorted(names - {"O"})])

    @property
    def entity_types(self) -> list[str]:
        return sorted({t[2:] for t in self.labels if t != "O"})

    def check(self, docs: list[Document], split: str) -> None:
        """Raise on rows without aligned tags or with tags training never saw."""
        _check_annotated(docs, split)
        known = set(self.labels)
        unseen = [(i, sorted(set(d.tags) - known)) for i, d in enumerate(docs)]  # type: ignore[arg-type]
        unseen = [(i, tags) for i, tags in unseen if tags]
        if unseen:
            raise DataError(
                f"{len(unseen)} '{split}' rows have tags never seen in training: "
                f"{_rows(docs, [i for i, _ in unseen])} with {[t for _, t in unseen[:5]]}; "
                f"known tags: {self.labels}"
            )


def prepare(splits: Splits) -> TagInfo:
    _check_annotated(splits["train"], "train")
    info = TagInfo.from_documents(splits["train"])
    for split in ("train", "val", "test"):
        docs = splits.get(split) or []
        info.check(docs, split)
        bad = [i for i, d in enumerate(docs) if invalid_bio(d.tags)]  # type: ignore[arg-type]
        if bad:
            logger.warning(
                "token-classification: %d '%s' rows have an I-X tag not after B-X/I-X, e.g. %s; "
                "it is scored as the start of an entity",
                len(bad),
                split,
                _rows(docs, bad),
            )
    return info


def chunk_spans(tokens: list[str], sizes: list[int], budget: int) -> list[tuple[int, int]]:
    """Split ``tokens`` into ``[start, end)`` spans of at most ``budget`` sub-tokens.

    ``sizes[i]`` is how many sub-tokens token ``i`` becomes. A span ends after the last
    sentence end that fits, else the last clause end, else where the budget runs out. A single
    token longer than the budget is a span alone (the tokenizer then truncates its tail).
    """
    spans, start, n = [], 0, len(tokens)
    while start < n:
        end, used, sentence, clause = start, 0, 0, 0
        while end < n and (end == start or used + sizes[end] <= budget):
            used += sizes[end]
            end += 1
            if tokens[end - 1] in SENTENCE_END:
                sentence = end
            elif tokens[end - 1] in CLAUSE_END:
                clause = end
        if end < n:  # cut: prefer a sentence end, then a clause end, in the span's second half
            for cut in (sentence, clause):
                if cut > start + (end - start) // 2:
                    end = cut
                    break
        spans.append((start, end))
        start = end
    return spans


def token_collate(pad_id: int, virtual: int = 0) -> Any:
    """Batches of ``{"input_ids", "labels"}`` features: padded (labels with -100), masked;
    labels get ``virtual`` leading -100s for prompt tuning's virtual tokens."""
    import torch

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            "input_ids": pad_sequences([f["input_ids"] for f in features], pad_id),
            "attention_mask": pad_sequences([[1] * len(f["input_ids"]) for f in features], 0),
            "labels": pad_sequences([[IGNORE] * virtual + f["labels"] for f in features], IGNORE),
        }

    return collate


def encode(
    tokenizer: Any, docs: list[Document], info: TagInfo, options: Any, split: str
) -> Encoded:
    """Chunk to ``max_length`` and label the first sub-token of every token.

    The train split is packed: consecutive examples are read as one stream and cut into
    windows of ``max_length`` (at sentence ends where possible), so a batch holds no padding
    and a short paragraph trains with its neighbours as context. On People's Daily that is
    about 1.9x fewer training rows than one chunk per paragraph (an average paragraph is 100
    characters, far below 128) for the same tokens. Val/test examples are chunked one by one,
    so a prediction never depends on the rows next to it.

    Features carry ``example_index`` and ``word_index`` (which token of which example each
    first sub-token stands for, -1 elsewhere) so ``predict`` can put the chunks back together.
    Tokens with no sub-token (spaces, characters the tokenizer drops) get no label and are
    predicted "O"; counted.
    """
    opts = TaskOptions.of(options)
    if not getattr(tokenizer, "is_fast", False):
        raise LmforgeError(
            "token-classification needs a fast (Rust) tokenizer to map sub-tokens to words; "
            "the model directory needs a tokenizer.json"
        )
    info.check(docs, split)
    virtual = opts.virtual_tokens
    max_length = opts.text_length  # prompt tuning's virtual tokens take positions too
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise LmforgeError(
            f"finetune.max_length={opts.max_length} leaves no room for tokens"
            + (f" after {virtual} virtual tokens" if virtual else "")
        )
    index = {name: i for i, name in enumerate(info.labels)}
    token_lists = [d.tokens or [] for d in docs]
    sizes = _subtoken_counts(tokenizer, token_lists)
    groups = [list(range(len(docs)))] if split == "train" else [[i] for i in range(len(docs))]
    windows: list[list[tuple[int, int]]] = []  # (example, token) of each token in a window
    for group in groups:
        stream = [(i, w) for i in group for w in range(len(token_lists[i]))]
        spans = chunk_spans(
            [token_lists[i][w] for i, w in stream], [sizes[i][w] for i, w in stream], budget
        )
        windows.extend(stream[a:b] for a, b in spans)
    enc = tokenizer(
        [[token_lists[i][w] for i, w in window] for window in windows],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    features, truncated, labelled = [], set(), 0
    for j, window in enumerate(windows):
        example_index, word_index, labels, seen = [], [], [], set()
        for w in enc.word_ids(j):
            if w is None or w in seen:  # special token, or a later sub-token of a token
                example_index.append(-1)
                word_index.append(-1)
                labels.append(IGNORE)
            else:
                seen.add(w)
                i, k = window[w]
                example_index.append(i)
                word_index.append(k)
                labels.append(index[docs[i].tags[k]])  # type: ignore[index]
        labelled += len(seen)
        if enc.encodings[j].overflowing:
            truncated.update(i for i, _ in window)
        if not seen:  # only spaces: nothing to learn, and an all -100 batch has a NaN loss
            continue
        features.append(
            {
                "input_ids": enc["input_ids"][j],
                "labels": labels,
                "example_index": example_index,
                "word_index": word_index,
            }
        )
    no_subtokens = sum(n.count(0) for n in sizes)
    per_example = Counter(i for window in windows for i in {i for i, _ in window})
    warnings = {
        "examples_split_into_chunks": sum(c > 1 for c in per_example.values()),
        "empty_examples": sum(not t for t in token_lists),
        "tokens_without_subtokens": no_subtokens,
        "tokens_cut_by_truncation": sum(map(len, token_lists)) - labelled - no_subtokens,
    }
    warnings = {k: v for k, v in warnings.items() if v}
    _log(warnings, split, len(docs), len(features), packed=split == "train")
    return Encoded(
        features,
        [list(d.tags or []) for d in docs],
        token_collate(tokenizer.pad_token_id, virtual),
        len(truncated),
        warnings,
    )


def _subtoken_counts(tokenizer: Any, token_lists: list[list[str]]) -> list[list[int]]:
    """For each example, how many sub-tokens each of its tokens becomes (0 for a space)."""
    # verbose=False: no "longer than the model's maximum" warning, chunking handles that
    enc = tokenizer(token_lists, is_split_into_words=True, add_special_tokens=False, verbose=False)
    out = []
    for j, tokens in enumerate(token_lists):
        counts = [0] * len(tokens)
        for w in enc.word_ids(j):
            if w is not None:
                counts[w] += 1
        out.append(counts)
    return out


def _log(warnings: dict[str, int], split: str, examples: int, features: int, packed: bool) -> None:
    logger.info(
        "token-classification: '%s' %d examples -> %d %s (%d examples split across them "
        "rather than truncated)",
        split,
        examples,
        features,
        "packed windows" if packed else "chunks",
        warnings.get("examples_split_into_chunks", 0),
    )
    if "empty_examples" in warnings:
        logger.warning(
            "token-classification: '%s' has %d examples without tokens",
            split,
            warnings["empty_examples"],
        )
    for key in ("tokens_without_subtokens", "tokens_cut_by_truncation"):
        if key in warnings:
            logger.warning(
                "token-classification: '%s' has %d %s; they are predicted 'O'",
                split,
                warnings[key],
                key.replace("_", " "),
            )


def load_model(
    path: Path, info: TagInfo, *, trust_remote_code: bool = False, for_inference: bool = False
) -> Any:
    """``AutoModelForTokenClassification``; the keywords are ``load_head``'s. For inference, a
    model saved with a CRF head (``crf.safetensors`` beside it) comes with its CRF, so
    ``predict`` decodes as it was trained (see ``tasks.crf``)."""
    from transformers import AutoModelForTokenClassification

    from lmforge.tasks.crf import with_crf
    from lmforge.tasks.heads import label_config, load_head

    model = load_head(
        AutoModelForTokenClassification,
        path,
        "token-classification",
        trust_remote_code=trust_remote_code,
        for_inference=for_inference,
        **label_config(info.labels),
    )
    return with_crf(model, path) if for_inference else model


def crf_head(model: Any, info: TagInfo, train: Encoded) -> Any:
    """``finetune.head: crf``: ``model`` under a fresh linear-chain CRF (``tasks.crf``), its
    transitions started from the tag bigrams of the ``train`` features."""
    from lmforge.tasks.crf import crf_head as wrap

    tags = [[y for y in f["labels"] if y != IGNORE] for f in train.features]
    return wrap(model, info.labels, tags)


def predict(model: Any, data: Encoded, processor: Any, info: TagInfo, options: Any) -> list[Any]:
    """One tag per input token, the best *valid* tag sequence of each example.

    Softmax head: per-token argmax often yields sequences no annotator writes (``O I-PER``,
    ``B-ORG I-PER``), and seqeval then scores broken entities; a Viterbi pass over the per-token
    log-probabilities with the scheme's forbidden transitions set to -inf (the constraint a CRF
    layer learns) fixes them at no training cost. CRF head (``tasks.crf.CrfTagger``): Viterbi
    over the emissions with the learned transitions, forbidden ones excluded. Chunks are put
    back together first, so the path runs over the whole example. Tokens no chunk labelled
    (spaces, truncation) score 0 for "O" and -10000 for the rest.
    """
    opts = TaskOptions.of(options)
    import torch

    from lmforge.tasks.crf import CrfTagger, viterbi_decode

    crf = model.decoding_scores() if isinstance(model, CrfTagger) else None
    n = len(info.labels)
    scores = [torch.full((len(ref), n), -1e4) for ref in data.references]
    outside = info.labels.index("O") if "O" in info.labels else 0
    for s in scores:
        s[:, outside] = 0.0  # unlabelled tokens: "O"
    features: Iterator[dict[str, Any]] = iter(data.features)
    virtual = opts.virtual_tokens
    for logits in logits_in_batches(model, data, opts.batch_size * 2):
        rows = logits[:, virtual:]  # (B, T, labels): CRF emissions, or softmax log-probabilities
        for row in rows if crf is not None else rows.log_softmax(-1):
            f = next(features)
            for t, (i, w) in enumerate(zip(f["example_index"], f["word_index"], strict=False)):
                if w >= 0:
                    scores[i][w] = row[t]
    if crf is None:
        penalty = torch.where(transition_mask(info.labels), 0.0, float("-inf"))
        crf = (penalty[:n, :n], penalty[n, :n], penalty[:n, n])
    return [[info.labels[j] for j in viterbi_decode(s, *crf)] for s in scores]


def transition_mask(labels: list[str]) -> Any:
    """``allowed[a, b]``: tag b may follow tag a; row ``len(labels)`` is the sequence start,
    column ``len(labels)`` the end. BIO: I-X only after B-X or I-X. IOBES also: an entity
    opened by B-/I- must continue (I-/E- of its type), and may not end the sequence."""
    import torch

    iobes = any(lab[:2] in ("E-", "S-") for lab in labels)
    n = len(labels)
    allowed = torch.ones(n + 1, n + 1, dtype=torch.bool)
    for a, prev in enumerate([*labels, "O"]):
        open_entity = prev[:2] in ("B-", "I-") and a < n
        for b, cur in enumerate([*labels, "O"]):
            continues = cur[:2] in ("I-", "E-") and b < n
            if continues:
                allowed[a, b] = open_entity and prev[2:] == cur[2:]
            elif iobes:
                allowed[a, b] = not open_entity
    return allowed


def viterbi(logprobs: Any, allowed: Any) -> list[int]:
    """Highest-scoring tag path through (T, L) log-probabilities under ``transition_mask``."""
    import torch

    from lmforge.tasks.crf import viterbi_decode

    n = logprobs.shape[1]
    penalty = torch.where(allowed, 0.0, float("-inf"))
    return viterbi_decode(logprobs, penalty[:n, :n], penalty[n, :n], penalty[:n, n])


def metrics(references: list[Any], predictions: list[Any], info: TagInfo) -> dict[str, Any]:
    """seqeval entity precision/recall/F1 (micro over entities, and per type), token accuracy."""
    from lmforge.evaluate.metrics import entity_metrics

    return entity_metrics(references, predictions)


def baseline(splits: Splits, info: TagInfo) -> dict[str, Any]:
    """A linear-chain CRF on character n-gram features, trained on the same train split."""
    import time

    from lmforge.tasks.baselines_crf import crf_tagger

    train, test = splits["train"], splits["test"]
    logger.info("finetune: training the CRF baseline on %d sequences", len(train))
    t0 = time.perf_counter()
    preds = crf_tagger(
        [d.tokens or [] for d in train],
        [d.tags or [] for d in train],
        [d.tokens or [] for d in test],
    )
    scores = metrics([d.tags for d in test], preds, info)
    return {"method": "crf (sklearn-crfsuite)", **scores, "seconds": time.perf_counter() - t0}


def report(scores: dict[str, Any], info: TagInfo, out: Path, title: str) -> dict[str, str]:
    """A bar plot of precision, recall and F1 per entity type."""
    if not scores.get("per_type"):
        return {}
    plot_per_type(scores["per_type"], out / "entity_f1.png", title)
    return {"entity_f1": "entity_f1.png"}


def plot_per_type(per_type: dict[str, dict[str, float]], path: Path, title: str = "") -> Path:
    from lmforge.core.plots import figure

    types = sorted(per_type)
    with figure(path, (max(4.0, 1.2 * len(types) + 2), 3.5), dpi=100) as (_, ax):
        width = 0.27
        for k, key in enumerate(("precision", "recall", "f1")):
            xs = [i + (k - 1) * width for i in range(len(types))]
            ax.bar(xs, [per_type[t][key] for t in types], width, label=key)
        ax.set_xticks(range(len(types)), [f"{t}\n(n={per_type[t]['support']})" for t in types])
        ax.set_ylim(0, 1)
        ax.set_title(title or "entity scores per type")
        ax.legend(loc="lower right")
    return path


def from_preset(preset: str, info: TagInfo, tokenizer_dir: Path | None) -> tuple[Any, Any]:
    from lmforge.tasks.heads import encoder_from_preset

    return encoder_from_preset(preset, tokenizer_dir, lambda p: load_model(p, info))


TASKS.add(
    "token-classification",
    Task(
        "token-classification",
        "named-entity recognition and other per-token tagging (BIO tags)",
        "TOKEN_CLS",
        prepare,
        load_model,
        encode,
        predict,
        metrics,
        presets=ENCODER_PRESETS,
        from_preset=from_preset,
        baseline=baseline,
        report=report,
        main_metric="f1",
    ),
)
