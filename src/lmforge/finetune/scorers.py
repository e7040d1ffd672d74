"""Label scorers that need no training: sentence-embedding similarity and LM likelihood.

* ``embed`` + ``prototypes``: mean-pooled, L2-normalised sentence embeddings (as
  sentence-transformers computes them for all-MiniLM-L6-v2); a class prototype is its
  description's embedding plus the sum of its shots' (a prototypical network without
  training, Snell et al. 2017).
* ``build_prompts`` + ``label_scores``: the log-probability of each label's verbalizer after a
  prompt under a causal LM, optionally after k demonstrations per class (in-context learning,
  Brown et al. 2020) and calibrated against a content-free input (Zhao et al. 2021). The
  demonstrations are encoded once; every test text reuses their key/value cache.

torch and transformers are imported inside the functions (the recipe validator imports the
finetune package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.core.progress import progress_bar
from lmforge.data.document import Document

if TYPE_CHECKING:
    import torch

    from lmforge.finetune.fewshot_config import FewShotConfig

CONTENT_FREE = "N/A"  # the calibration input of Zhao et al. (2021)
DEMO_SEPARATOR = "\n\n"
# test texts packed into one forward pass: at most max(PACK_TOKENS, prefix length) tokens,
# and a packed-length x (prefix + packed-length) attention matrix of ATTENTION_BUDGET
# entries (x 9 heads x 4 bytes = 300 MB for SmolLM2)
PACK_TOKENS = 512
ATTENTION_BUDGET = 2**23


def normalise_space(text: str) -> str:
    """One line per text: BBC articles put the title on its own line, which would break a
    ``Text: ...\\nLabel:`` template."""
    return " ".join(text.split())


def truncate_tokens(tokenizer: Any, texts: list[str], n: int) -> tuple[list[str], int]:
    """Texts cut to their first ``n`` tokens (decoded back to text), and how many were cut."""
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    cut = [tokenizer.decode(x[:n]) if len(x) > n else t for x, t in zip(ids, texts, strict=True)]
    return cut, sum(len(x) > n for x in ids)


# ---------------------------------------------------------------- embedding


def embed(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 32
) -> torch.Tensor:
    """(N, d) L2-normalised mean-pooled embeddings, as sentence-transformers computes them."""
    import torch

    out = [torch.zeros(0, model.config.hidden_size)]  # k=0: no shots
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        with torch.no_grad():
            h = model(**enc).last_hidden_state  # (B, T, d)
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out)


def descriptions(labels: list[str], few: FewShotConfig) -> list[str]:
    given = few.label_descriptions or {}
    return [
        given.get(label, few.description_template.replace("{label}", label)) for label in labels
    ]


def prototypes(
    described: torch.Tensor, shots: torch.Tensor, shot_labels: list[int], weight: float
) -> torch.Tensor:
    """(L, d) unit class prototypes: normalise(weight * description + sum of the shots);
    without shots, the descriptions."""
    import torch

    if not shot_labels:
        return described
    protos = (described * weight).index_add(0, torch.tensor(shot_labels), shots)
    return torch.nn.functional.normalize(protos, dim=-1)


# ---------------------------------------------------------------- likelihood


@dataclass
class Prompts:
    """Token ids of a likelihood/in-context scoring problem: prefix + query + continuation."""

    prefix: list[int]  # demonstrations (and BOS), shared by every test text
    queries: list[list[int]]  # one per test text: the template up to the label
    continuations: list[list[int]]  # one per label: " " + verbalizer (+ the template's tail)
    demo_tokens: int = 0  # tokens kept per demonstration text
    truncated: int = 0  # test texts cut to max_length tokens


def build_prompts(
    tokenizer: Any,
    few: FewShotConfig,
    labels: list[str],
    demos: list[Document],
    texts: list[str],
    max_length: int,
    context: int,
) -> Prompts:
    """Tokenise the template around the demonstrations, test texts and verbalizers.

    Spaces before ``{label}`` move into the continuation (``"Label:"`` + ``" sports"``), as
    BPE vocabularies attach a space to the following word. Demonstration texts are cut to
    ``demo_tokens`` tokens, fewer when the prompt would overflow ``context``.

    Raises:
        LmforgeError: even 4 tokens per demonstration do not fit the context.
    """
    head, tail = few.template.split("{label}")
    query_head = head.rstrip(" ")
    verbal = few.verbalizers or {}
    words = [head[len(query_head) :] + verbal.get(label, label) + tail for label in labels]
    continuations = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    texts, truncated = truncate_tokens(tokenizer, [normalise_space(t) for t in texts], max_length)
    queries = [
        tokenizer(query_head.replace("{text}", t), add_special_tokens=False)["input_ids"]
        for t in texts
    ]
    bos = [
        i
        for i in tokenizer("", add_special_tokens=True)["input_ids"]
        if i != tokenizer.eos_token_id
    ]
    room = context - max(map(len, queries), default=0) - max(map(len, continuations)) - len(bos)
    demo_words = [words[labels.index(str(d.label))] for d in demos]
    demo_tokens = few.demo_tokens
    while True:
        prefix = bos
        if demos:
            cut, _ = truncate_tokens(
                tokenizer, [normalise_space(d.text) for d in demos], demo_tokens
            )
            shown = [
                query_head.replace("{text}", t) + w for t, w in zip(cut, demo_words, strict=True)
            ]
            text = DEMO_SEPARATOR.join(shown) + DEMO_SEPARATOR
            prefix = bos + tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(prefix) <= room or not demos:
            break
        if demo_tokens <= 4:
            raise LmforgeError(
                f"{len(demos)} demonstrations do not fit the model's context of {context} tokens "
                "even at 4 tokens each; lower fewshot.shots / fewshot.curve or finetune.max_length"
            )
        demo_tokens = max(4, int(demo_tokens * room / len(prefix) * 0.95))
    if demos and demo_tokens < few.demo_tokens:
        logger.warning(
            "in-context: %d demonstrations cut to %d tokens each (fewshot.demo_tokens=%d) to fit "
            "the context of %d tokens",
            len(demos),
            demo_tokens,
            few.demo_tokens,
            context,
        )
    return Prompts(prefix, queries, continuations, demo_tokens if demos else 0, truncated)


def continuation_logprobs(model: Any, prompts: Prompts, reuse_prefix: bool = True) -> torch.Tensor:
    """(N, L) summed log-probability of each continuation after prefix + query.

    The prefix (the demonstrations) is encoded once and its key/value cache shared. Test
    texts are packed side by side into one sequence on top of it, with a block mask so each
    attends to the prefix and, causally, to itself only (and position ids restarting after
    the prefix): no padding, no per-row copy of the cache. The last position of a text
    scores every label's first token; multi-token labels then feed their other tokens,
    packed the same way, each attending to the prefix, its own text and itself.

    ``reuse_prefix=False`` is the reference: every (text, label) prompt scored in full.
    """
    import torch

    if not reuse_prefix:
        return _score_each_prompt(model, prompts)
    prefix_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    if prompts.prefix:
        with torch.no_grad():
            past = model(input_ids=torch.tensor([prompts.prefix]), use_cache=True).past_key_values
        prefix_cache = [(layer[0], layer[1]) for layer in past]  # (1, H, P, D) each
    scores = torch.zeros(len(prompts.queries), len(prompts.continuations))
    lengths = [len(q) for q in prompts.queries]
    with progress_bar("label scores", len(lengths)) as advance:
        for pack in _packs(lengths, len(prompts.prefix)):
            scores[pack] = _score_pack(model, prompts, pack, prefix_cache)
            advance(len(pack))
    return scores


def _packs(lengths: list[int], p_len: int) -> list[list[int]]:
    """Consecutive query indices packed so that the packed length T stays under
    ``max(PACK_TOKENS, P)`` (attention between packed texts is wasted work) and the
    attention matrix T x (P + T) under ``ATTENTION_BUDGET``."""
    packs: list[list[int]] = []
    total = 0
    for i, n in enumerate(lengths):
        t = total + n
        if packs and t <= max(PACK_TOKENS, p_len) and t * (p_len + t) <= ATTENTION_BUDGET:
            packs[-1].append(i)
            total = t
        else:
            packs.append([i])
            total = n
    return packs


def _additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(T, S) booleans -> the (1, 1, T, S) additive mask transformers takes as is."""
    import torch

    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def _causal_blocks(segment: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """(T, T) True where token c is in token r's segment and not after it."""
    return (segment[:, None] == segment[None, :]) & (pos[None, :] <= pos[:, None])


def _score_pack(
    model: Any,
    prompts: Prompts,
    pack: list[int],
    prefix_cache: list[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """(B, L) scores of the texts ``pack``, packed into one row on the prefix's cache."""
    import torch
    from transformers import DynamicCache

    p_len, conts = len(prompts.prefix), prompts.continuations
    dtype = next(model.parameters()).dtype
    queries = [prompts.queries[i] for i in pack]
    lengths = torch.tensor([len(q) for q in queries])  # (B,)
    seg = torch.repeat_interleave(torch.arange(len(queries)), lengths)  # (T,) text of a token
    pos = torch.cat([torch.arange(n) for n in lengths.tolist()])  # (T,) position in its text
    allowed = torch.cat(
        [torch.ones(len(seg), p_len, dtype=torch.bool), _causal_blocks(seg, pos)], 1
    )
    cache = DynamicCache(prefix_cache) if prefix_cache else DynamicCache()  # a copy: it grows
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor([[t for q in queries for t in q]]),
            attention_mask=_additive_mask(allowed, dtype),
            position_ids=(p_len + pos)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=lengths.cumsum(0) - 1,  # each text's last token only
        )
    logp = out.logits[0].float().log_softmax(-1)  # (B, V)
    scores = logp[:, [c[0] for c in conts]]  # (B, L): every label's first token
    multi = [j for j, c in enumerate(conts) if len(c) > 1]
    if not multi:
        return scores
    # pass 2: the other tokens of multi-token labels, one packed segment per (text, label)
    pairs = [(b, j) for b in range(len(queries)) for j in multi]
    tails = [conts[j][:-1] for _, j in pairs]
    t_len = torch.tensor([len(t) for t in tails])
    t_seg = torch.repeat_interleave(torch.arange(len(pairs)), t_len)  # (Tt,)
    t_pos = torch.cat([torch.arange(n) for n in t_len.tolist()])
    owner = torch.tensor([b for b, _ in pairs])[t_seg]  # (Tt,) the text each token follows
    allowed = torch.cat(
        [
            torch.ones(len(t_seg), p_len, dtype=torch.bool),
            owner[:, None] == seg[None, :],
            _causal_blocks(t_seg, t_pos),
        ],
        1,
    )
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor([[t for tail in tails for t in tail]]),
            attention_mask=_additive_mask(allowed, dtype),
            position_ids=(p_len + lengths[owner] + t_pos)[None],
            past_key_values=out.past_key_values,
        ).logits[0]
    logp2 = logits.float().log_softmax(-1)  # (Tt, V)
    targets = torch.tensor([t for _, j in pairs for t in conts[j][1:]])  # next tokens
    rows = torch.tensor([b for b, j in pairs for _ in conts[j][1:]])
    cols = torch.tensor([j for _, j in pairs for _ in conts[j][1:]])
    picked = logp2[torch.arange(len(targets)), targets]
    return scores.index_put((rows, cols), picked, accumulate=True)


def _score_each_prompt(model: Any, prompts: Prompts) -> torch.Tensor:
    """The textbook way, for reference: prefix + text + label as one sequence each."""
    import torch

    scores = torch.zeros(len(prompts.queries), len(prompts.continuations))
    for i, q in enumerate(prompts.queries):
        for j, c in enumerate(prompts.continuations):
            with torch.no_grad():  # logits where the label's tokens are predicted
                logits = model(
                    input_ids=torch.tensor([prompts.prefix + q + c]), logits_to_keep=len(c) + 1
                ).logits[0, :-1]
            scores[i, j] = logits.float().log_softmax(-1)[torch.arange(len(c)), c].sum()
    return scores


def label_scores(model: Any, tokenizer: Any, prompts: Prompts, few: FewShotConfig) -> torch.Tensor:
    """(N, L) the likelihood scorer's label scores (mean or sum; calibrated if asked)."""
    import torch

    if few.calibrate:  # score the content-free text as one more query
        free = tokenizer(
            few.template.split("{label}")[0].rstrip(" ").replace("{text}", CONTENT_FREE),
            add_special_tokens=False,
        )["input_ids"]
        prompts = Prompts(prompts.prefix, [*prompts.queries, free], prompts.continuations)
    scores = continuation_logprobs(model, prompts)
    if few.score == "mean":
        scores = scores / torch.tensor([len(c) for c in prompts.continuations])
    if few.calibrate:
        scores = scores[:-1] - scores[-1]
    return scores
