"""Instruction tuning / chat: a causal LM learns to write the reply to a user turn, with the
loss on the reply only. Head: ``AutoModelForCausalLM`` (decoder-only models).

Data: ``text_column`` holds the user turn (instruction), ``label_column`` the reply.

Each example is laid out by the tokenizer's chat template (SmolLM2: ChatML with its default
system prompt)::

    [head: system prompt, "<|im_start|>user\\n"] [user turn] [middle: "<|im_end|>\\n<|im_start|>
    assistant\\n"] [reply] [end: "<|im_end|>"]
     \\_____________________ labels -100 ___________________________/ \\__ loss here ____/

Tokenizers without a chat template (a tokenizer trained by this run) use a plain template,
``### Instruction:\\n{turn}\\n\\n### Response:\\n{reply}<eos>``, and say so in the log. Too-long
examples lose the end of the user turn first (down to a quarter of the room), then the end of
the reply; each cut example is counted. Predictions are greedy generations of the reply
(``finetune.generation_max_tokens``, stopping at EOS / end-of-turn); metrics are BLEU and chrF
against the reference replies (characters as tokens for Chinese) and the perplexity of the
reference replies. The baseline is a retrieval chatbot, as ChatterBot itself works: the reply
of the TF-IDF-nearest training prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.data.document import Document
from lmforge.tasks.base import TASKS, Encoded, Splits, Task, TaskOptions, pad_sequences

DECODER_PRESETS = ("gpt-tiny", "gpt-small", "llama-tiny", "llama-small")
PLAIN_TEMPLATE = ("### Instruction:\n", "\n\n### Response:\n")  # text around the user turn
# stand-ins rendered through the chat template to find where the turn and the reply go
_USER, _REPLY = "LMFORGE-USER-TURN-0f3a", "LMFORGE-REPLY-TURN-9c1e"


@dataclass(frozen=True)
class InstructionInfo:
    language: str  # "zh" when the replies are mostly Chinese (BLEU then tokenizes characters)


@dataclass(frozen=True)
class ChatFormat:
    """Token ids around the user turn and the reply, from the chat template or the plain one."""

    head: list[int]  # before the user turn (system prompt, role header, BOS)
    middle: list[int]  # between the user turn and the reply (end of turn, assistant header)
    end: list[int]  # after the reply, through the end-of-turn token: trained on
    stop_ids: list[int]  # generation stops at any of these
    template: str  # "chat" or "plain"


class Generations(list):
    """Generated replies (a list of str) plus what ``predict`` measured alongside them."""

    response_nll: float | None = None  # mean loss over the reference reply tokens
    stopped_fraction: float | None = None  # share that ended with EOS / end-of-turn


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    return ids


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def chat_format(tokenizer: Any, quiet: bool = False) -> ChatFormat:
    """Split the tokenizer's chat template around a user turn and a reply (plain template if
    it has none). Raises ``LmforgeError`` if the tokenizer has no EOS to end a reply with."""
    eos = tokenizer.eos_token_id
    if tokenizer.chat_template:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": _USER}, {"role": "assistant", "content": _REPLY}],
            tokenize=False,
        )
        u, r = rendered.find(_USER), rendered.find(_REPLY)
        if 0 <= u < r:
            tail = _ids(tokenizer, rendered[r + len(_REPLY) :])
            special = _special_ids(tokenizer) | ({eos} if eos is not None else set())
            stop = next((i for i, t in enumerate(tail) if t in special), None)
            if stop is not None or eos is not None:
                end = tail[: stop + 1] if stop is not None else [eos]
                return ChatFormat(
                    _ids(tokenizer, rendered[:u]),
                    _ids(tokenizer, rendered[u + len(_USER) : r]),
                    end,
                    sorted({end[-1]} | ({eos} if eos is not None else set())),
                    "chat",
                )
        if not quiet:
            logger.warning("instruction: the chat template hides the turn text; plain template")
    if eos is None:
        raise LmforgeError(
            "finetune.model: the tokenizer has no EOS token, so a reply has no end to learn; "
            "use a tokenizer with an eos token"
        )
    if not quiet:
        logger.info(
            "instruction: the tokenizer has no chat template; using the plain template "
            "'### Instruction:\\n{text}\\n\\n### Response:\\n{reply}<eos>'"
        )
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    head, middle = PLAIN_TEMPLATE
    return ChatFormat(bos + _ids(tokenizer, head), _ids(tokenizer, middle), [eos], [eos], "plain")


def _missing(docs: list[Document], split: str) -> None:
    bad = [i for i, d in enumerate(docs) if not isinstance(d.label, str) or not d.label.strip()]
    if bad:
        raise DataError(
            f"instruction: {len(bad)} '{split}' rows have no reply (label column), e.g. rows "
            f"{bad[:5]}; every row needs the response text (finetune.data.label_column)"
        )


def prepare(splits: Splits) -> InstructionInfo:
    from lmforge.core.text import mostly_cjk

    for split in ("train", "val", "test"):
        _missing(splits.get(split) or [], split)
    return InstructionInfo("zh" if mostly_cjk([d.label for d in splits["train"]]) else "en")  # type: ignore[misc]


def lay_out(
    fmt: ChatFormat, turn: list[int], reply: list[int], max_length: int
) -> tuple[list[int], int, list[int], bool]:
    """(input ids, prompt length, generation prompt, truncated) for one example.

    The user turn is cut first, down to a quarter of the room left by the template, then the
    reply (losing its end-of-turn token). The generation prompt is cut only to fit alone.
    """
    room = max_length - len(fmt.head) - len(fmt.middle)
    if room < 2:
        raise LmforgeError(
            f"finetune.max_length={max_length} leaves no room for the text: the chat template "
            f"alone takes {len(fmt.head) + len(fmt.middle)} tokens; raise max_length"
        )
    response, kept = reply + fmt.end, turn
    cut = len(turn) + len(response) > room
    if cut:
        kept = turn[: max(room - len(response), min(len(turn), room // 4))]
        response = response[: room - len(kept)]
    prompt = fmt.head + kept + fmt.middle
    generation_prompt = fmt.head + turn[:room] + fmt.middle
    return prompt + response, len(prompt), generation_prompt, cut


def collate(pad_id: int) -> Any:
    def batch(features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [f["input_ids"] for f in features]
        return {
            "input_ids": pad_sequences(rows, pad_id),
            "attention_mask": pad_sequences([[1] * len(r) for r in rows], 0),
            "labels": pad_sequences([f["labels"] for f in features], -100),  # pads: no loss
        }

    return batch


def encode(
    tokenizer: Any, docs: list[Document], info: InstructionInfo, options: Any, split: str
) -> Encoded:
    """Chat-formatted examples whose labels are -100 everywhere but on the reply tokens."""
    opts = TaskOptions.of(options)
    _missing(docs, split)
    fmt = chat_format(tokenizer, quiet=split != "train")
    turns = tokenizer([d.text for d in docs], add_special_tokens=False)["input_ids"]
    replies = tokenizer([d.label for d in docs], add_special_tokens=False)["input_ids"]
    features, truncated = [], 0
    for turn, reply in zip(turns, replies, strict=True):
        ids, n_prompt, prompt, cut = lay_out(fmt, turn, reply, opts.max_length)
        truncated += cut
        labels = [-100] * n_prompt + ids[n_prompt:]
        features.append({"input_ids": ids, "labels": labels, "prompt": prompt})
    warnings = {}
    empty = [i for i, d in enumerate(docs) if not d.text.strip()]
    if empty:
        warnings["empty_prompts"] = len(empty)
        logger.warning(
            "instruction: %d '%s' rows have an empty user turn (rows %s); kept",
            len(empty),
            split,
            empty[:5],
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fmt.stop_ids[0]
    return Encoded(features, [d.label for d in docs], collate(pad_id), truncated, warnings)


def load_model(
    path: Path,
    info: InstructionInfo,
    *,
    trust_remote_code: bool = False,
    for_inference: bool = False,
) -> Any:
    """``AutoModelForCausalLM``; encoders (BERT's ``BertLMHeadModel`` is in transformers'
    causal-LM table) and encoder-decoders are refused by name. The keywords: ``load_head``'s."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    from lmforge.tasks.heads import load_head, register_own_architectures, remote_code_error

    register_own_architectures(path)  # a saved bottleneck-adapter decoder (finetune.adapters)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ValueError as e:
        if (error := remote_code_error(path, e)) is not None:
            raise error from None
        raise
    kind = None
    if getattr(config, "is_encoder_decoder", False):
        kind = "an encoder-decoder"
    elif config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.is_decoder:
        kind = "an encoder"
    if kind is not None:
        raise LmforgeError(
            f"finetune.model: {path} is {kind} ({config.model_type!r}), which cannot do the "
            "'instruction' task: it needs a decoder-only causal LM, e.g. path: smollm2-135m "
            f"or preset: {' / '.join(DECODER_PRESETS)}"
        )
    return load_head(
        AutoModelForCausalLM,
        path,
        "instruction",
        trust_remote_code=trust_remote_code,
        for_inference=for_inference,
    )


def response_nll(model: Any, data: Encoded, batch_size: int) -> float:
    """Mean loss (nats) over the reply tokens of ``data``, weighted by token, not by batch."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data.batch(list(range(start, min(start + batch_size, len(data)))))
        labels = batch.pop("labels")[:, 1:].to(device)  # token t predicts token t + 1
        # the loss is computed here, not by the model: a peft AdaLoRA model loaded for inference
        # fails when given labels (its orthogonality penalty needs a trainable adapter)
        with torch.no_grad():
            width = batch["input_ids"].shape[1]  # prompt tuning prepends virtual positions
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            logits = logits[:, -width:][:, :-1]
            total += torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)),
                labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            ).item()
        tokens += int((labels != -100).sum())
    return total / max(tokens, 1)


def predict(
    model: Any, data: Encoded, tokenizer: Any, info: InstructionInfo, options: Any
) -> Generations:
    """Greedy replies to the test prompts, plus the reference replies' mean NLL."""
    opts = TaskOptions.of(options)
    from lmforge.tasks.generation import decode, greedy_generate

    fmt = chat_format(tokenizer, quiet=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fmt.stop_ids[0]
    out = greedy_generate(
        model,
        [f["prompt"] for f in data.features],
        pad_id=pad_id,
        stop_ids=fmt.stop_ids,
        max_new_tokens=opts.generation_max_tokens,
        batch_size=opts.batch_size * 2,
    )
    replies = Generations(decode(tokenizer, out.ids))
    replies.stopped_fraction = out.stopped_fraction
    replies.response_nll = response_nll(model, data, opts.batch_size * 2)
    return replies


def metrics(references: list[str], predictions: list[str], info: InstructionInfo) -> dict[str, Any]:
    from lmforge.evaluate.metrics import generation_metrics, perplexity

    scores: dict[str, Any] = generation_metrics(predictions, references, info.language)  # type: ignore[arg-type]
    scores["empty_predictions"] = sum(not p for p in predictions)
    nll = getattr(predictions, "response_nll", None)
    if nll is not None:
        scores["response_nll"] = nll
        scores["perplexity"] = perplexity(nll)
    stopped = getattr(predictions, "stopped_fraction", None)
    if stopped is not None:
        scores["stopped_fraction"] = stopped
    return scores


def retrieval_replies(
    train_prompts: list[str], train_replies: list[str], queries: list[str]
) -> list[str]:
    """A retrieval chatbot: the reply of the training prompt most TF-IDF-similar to each query
    (word 1-2-grams; characters 1-2-grams for Chinese). With no shared term the first
    training reply is returned."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from lmforge.core.text import mostly_cjk

    if mostly_cjk(train_prompts):
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True)
    else:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    index = vectorizer.fit_transform(train_prompts)  # (N, V), rows L2-normalised
    nearest = (vectorizer.transform(queries) @ index.T).toarray().argmax(axis=1)  # cosine
    return [train_replies[int(i)] for i in nearest]


def baseline(splits: Splits, info: InstructionInfo) -> dict[str, Any]:
    """The retrieval chatbot on the same train/test split, scored with BLEU and chrF."""
    from lmforge.evaluate.metrics import generation_metrics

    train, test = splits["train"], splits["test"]
    replies = [str(d.label) for d in train]  # prepare() checked every row has one
    preds = retrieval_replies([d.text for d in train], replies, [d.text for d in test])
    scores = generation_metrics(preds, [str(d.label) for d in test], info.language)  # type: ignore[arg-type]
    return {"method": "tfidf-retrieval", "bleu": scores["bleu"], "chrf": scores["chrf"]}


def from_preset(preset: str, info: InstructionInfo, tokenizer_dir: Path | None) -> tuple[Any, Any]:
    """A freshly initialised decoder preset sized to this run's tokenizer."""
    from lmforge.models.build import build_model, special_token_ids
    from lmforge.models.spec import ModelSpec
    from lmforge.tasks.heads import _run_tokenizer

    tokenizer = _run_tokenizer(tokenizer_dir, preset)
    model = build_model(
        ModelSpec(preset=preset), "clm", len(tokenizer), special_token_ids(tokenizer)
    )
    return model, tokenizer


TASKS.add(
    "instruction",
    Task(
        "instruction",
        "instruction tuning / chat with a causal LM; loss on the responses only",
        "CAUSAL_LM",
        prepare,
        load_model,
        encode,
        predict,
        metrics,
        presets=DECODER_PRESETS,
        from_preset=from_preset,
        baseline=baseline,
        main_metric="chrf",
    ),
)
