"""BERT-CRF: a linear-chain CRF over a token classifier's scores (``finetune.head: crf``).

The encoder + its ``classifier`` compute per-token *emissions* (B, T, L), exactly what a
``*ForTokenClassification`` model outputs as ``logits``; the CRF adds a learned score for each
tag-to-tag transition (plus a start and an end score per tag) and is trained with the
sequence log-likelihood (Lafferty et al. 2001; Lample et al. 2016 for neural emissions), using
``pytorch-crf``'s forward algorithm. Prediction is the Viterbi path: the tag sequence with the
highest emission + transition score.

Saved, the model directory stays a plain transformers token-classification model (the
emissions), with the transitions beside it in ``crf.safetensors``: ``transitions`` (L, L),
indexed [from, to], ``start_transitions`` (L) and ``end_transitions`` (L), in the label order
of ``config.json``'s ``id2label``. The saved scores are the ones decoding uses: transitions the
tagging scheme forbids (``O -> I-PER``; see ``token_classification.transition_mask``) are
-10000, so plain Viterbi never picks them. Without lmforge, plain transformers + torch
reproduce lmforge's predictions for a ``text`` of one token per character (Chinese NER) that
fits ``max_length`` (a test runs these lines)::

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    crf = load_file(f"{model_dir}/crf.safetensors")
    enc = tokenizer(list(text), is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]  # (T, L): the emissions
    words = enc.word_ids()  # each character's first sub-token carries its tag
    first = [i for i, w in enumerate(words) if w is not None and w != words[i - 1]]
    score, back = crf["start_transitions"] + logits[first[0]], []
    for i in first[1:]:  # Viterbi: best score of a path ending in each tag
        total = score[:, None] + crf["transitions"]  # (previous tag, tag)
        back.append(total.argmax(0))
        score = total.max(0).values + logits[i]
    path = [int((score + crf["end_transitions"]).argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    tags = [model.config.id2label[j] for j in reversed(path)]

Only the labelled sub-tokens (each word's first, as in BERT's NER recipe) form the CRF's chain:
the other positions carry label -100 and are dropped before the CRF sees the sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.core.errors import LmforgeError

CRF_FILE = "crf.safetensors"
FORBIDDEN = -1e4  # score of a transition the tagging scheme forbids (exp() is exactly 0)
IGNORE = -100


def viterbi_decode(
    emissions: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> list[int]:
    """The highest-scoring tag path of one sequence.

    Args:
        emissions: (T, L) scores of each tag at each position.
        transitions: (L, L) score of tag ``b`` right after tag ``a`` at ``[a, b]``.
        start, end: (L) scores of a tag opening / closing the sequence.
    """
    if not len(emissions):
        return []
    score = start + emissions[0]  # (L) best score of a path ending in each tag
    back = []
    for t in range(1, len(emissions)):
        total = score[:, None] + transitions  # (prev, cur)
        back.append(total.argmax(0))
        score = total.max(0).values + emissions[t]
    path = [int((score + end).argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


def compact(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the labelled positions of each row, left-aligned: (emissions (B, T', L), tags
    (B, T'), mask (B, T')). Rows keep their order; padding positions get tag 0, mask False."""
    keep = labels != IGNORE  # (B, T)
    counts = keep.sum(1)
    width = max(int(counts.max()), 1) if len(counts) else 1
    # a stable sort of "not kept" puts the kept positions first, in their order
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]
    mask = torch.arange(width, device=labels.device)[None, :] < counts[:, None]
    tags = labels.gather(1, order).masked_fill(~mask, 0)
    emissions = logits.gather(1, order[..., None].expand(-1, -1, logits.shape[-1]))
    return emissions, tags, mask


class CrfTagger(nn.Module):
    """A token-classification model (plain or peft-wrapped) with a CRF on its logits.

    It trains where the wrapped model trains (``fit`` reads ``.loss``; ``.logits`` stay the
    emissions), saves as the wrapped model plus ``crf.safetensors``, and passes every other
    attribute (``config``, ``peft_config``, ``base_model``) through to the wrapped model.
    """

    def __init__(self, emitter: nn.Module, labels: list[str]) -> None:
        from torchcrf import CRF

        from lmforge.tasks.token_classification import transition_mask

        super().__init__()
        self.emitter = emitter
        self.labels = list(labels)
        self.crf = CRF(len(labels), batch_first=True)
        # allowed[a, b] for tags; row L is the start, column L the end
        self.register_buffer("allowed", transition_mask(self.labels), persistent=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("emitter"), name)

    def forward(self, input_ids: Any = None, labels: Any = None, **kwargs: Any) -> Any:
        """The wrapped model's output, with ``loss`` the CRF's negative log-likelihood per
        labelled token when ``labels`` are given."""
        out = self.emitter(input_ids=input_ids, **kwargs)
        if labels is not None:
            # unconstrained while training: data in another scheme (an I- after O) still
            # trains; the scheme's constraint applies at decoding (decoding_scores)
            emissions, tags, mask = compact(out.logits.float(), labels)
            out.loss = -self.crf(emissions, tags, mask, reduction="token_mean")
        return out

    def decoding_scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(transitions, start, end) as decoding uses and ``crf.safetensors`` stores them: the
        learned scores, forbidden moves at -10000."""
        n = len(self.labels)
        crf = self.crf
        return tuple(  # type: ignore[return-value]
            s.detach().float().cpu().masked_fill(~m.cpu(), FORBIDDEN).contiguous()
            for s, m in (
                (crf.transitions, self.allowed[:n, :n]),
                (crf.start_transitions, self.allowed[n, :n]),
                (crf.end_transitions, self.allowed[:n, n]),
            )
        )

    def init_from_tags(self, sequences: list[list[int]]) -> None:
        """Start the transitions at the training tags' add-one-smoothed log bigram
        probabilities (and first/last-tag ones for start/end): the CRF's scores then begin
        where a tag HMM would, instead of at zero, and the fine-tuning learning rate (sized
        for the encoder) only has to refine them."""
        n = len(self.labels)
        pairs = torch.ones(n, n)
        first, last = torch.ones(n), torch.ones(n)
        for seq in sequences:
            if not seq:
                continue
            first[seq[0]] += 1
            last[seq[-1]] += 1
            for a, b in zip(seq, seq[1:], strict=False):
                pairs[a, b] += 1
        crf = self.crf
        crf.transitions.data.copy_((pairs / pairs.sum(1, keepdim=True)).log())
        crf.start_transitions.data.copy_((first / first.sum()).log())
        crf.end_transitions.data.copy_((last / last.sum()).log())

    def save_pretrained(self, dest: str | Path, **kwargs: Any) -> None:
        """The wrapped model as transformers/peft saves it, plus ``crf.safetensors``."""
        self.emitter.save_pretrained(dest, **kwargs)
        save_transitions(Path(dest), self)

    def merge_and_unload(self) -> CrfTagger:
        """peft's merge of the wrapped adapter; the CRF stays on top."""
        merged = CrfTagger(self.emitter.merge_and_unload(), self.labels)
        merged.crf.load_state_dict(self.crf.state_dict())
        return merged


def save_transitions(dest: Path, tagger: CrfTagger) -> Path:
    from safetensors.torch import save_file

    transitions, start, end = tagger.decoding_scores()
    path = dest / CRF_FILE
    tensors = {"transitions": transitions, "start_transitions": start, "end_transitions": end}
    save_file(tensors, str(path), metadata={"labels": "\t".join(tagger.labels)})
    return path


def with_crf(model: Any, directory: str | Path) -> Any:
    """``model`` with the CRF saved in ``directory`` on top, or ``model`` itself when the
    directory has no ``crf.safetensors`` (a softmax head). The one entry point for anything
    that loads a fine-tuned token classifier (evaluate, serve): predictions then come from
    Viterbi decoding, as in training.

    Raises:
        LmforgeError: the file's tags are not the model's (another model's transitions).
    """
    from safetensors import safe_open

    path = Path(directory) / CRF_FILE
    if not path.is_file():
        return model
    id2label = model.config.id2label
    labels = [id2label[i] for i in range(len(id2label))]
    with safe_open(str(path), framework="pt") as f:
        saved = (f.metadata() or {}).get("labels", "").split("\t")
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    if saved != labels:
        raise LmforgeError(
            f"{path} holds transitions for the tags {saved}, but the model beside it predicts "
            f"{labels}; save the model and its {CRF_FILE} together"
        )
    tagger = CrfTagger(model, labels)
    with torch.no_grad():
        tagger.crf.transitions.copy_(tensors["transitions"])
        tagger.crf.start_transitions.copy_(tensors["start_transitions"])
        tagger.crf.end_transitions.copy_(tensors["end_transitions"])
    device = next(model.parameters()).device
    return tagger.to(device).train(model.training)


def emissions_model(model: Any) -> Any:
    """The model under a CRF (what a weight format stores; ``crf.safetensors`` travels beside
    it), or ``model`` itself when it has none."""
    return model.emitter if isinstance(model, CrfTagger) else model


def copy_crf(source: Path, dest: Path) -> None:
    """Give ``dest`` the CRF of ``source``, when it has one and ``dest`` none: a compressed
    tagger without its transitions would silently decode per token."""
    import shutil

    if (Path(source) / CRF_FILE).is_file() and not (Path(dest) / CRF_FILE).exists():
        shutil.copy2(Path(source) / CRF_FILE, Path(dest) / CRF_FILE)


def crf_head(model: Any, labels: list[str], train_tags: list[list[int]]) -> CrfTagger:
    """A fresh CRF on ``model`` for training, its transitions started from ``train_tags``
    (the training examples' tag ids, labelled positions only)."""
    if isinstance(model, CrfTagger):  # fine-tuning a CRF model further: keep its transitions
        return model
    tagger = CrfTagger(model, labels)
    tagger.init_from_tags(train_tags)
    return tagger
