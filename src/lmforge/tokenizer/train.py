"""Build, train, measure and save a tokenizer.

The saved directory holds ``tokenizer.json`` + ``tokenizer_config.json`` in the Hugging Face
format, so ``AutoTokenizer.from_pretrained(dir)`` loads it without lmforge installed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.core.errors import DataError
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.wordpiece import train_wordpiece

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

BATCH = 1000
# A "word" for tokens-per-word: a run of non-space non-CJK characters, or one CJK character
# (Chinese has no spaces; one character is the closest unit without a word segmenter).
_WORD = re.compile(
    r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"
)


def _normalizer(cfg: TokenizerConfig):
    from tokenizers import normalizers

    steps = {
        "none": [],
        "nfc": [normalizers.NFC()],
        "nfkc": [normalizers.NFKC()],
        "lowercase": [normalizers.Lowercase()],
        "nfkc_lowercase": [normalizers.NFKC(), normalizers.Lowercase()],
    }[cfg.resolved_normalization()]
    if cfg.kind == "wordpiece":
        # BertNormalizer puts spaces around CJK characters so each becomes its own word,
        # the scheme of BERT's Chinese models; lowercasing is left to the option above.
        steps.append(
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, lowercase=False, strip_accents=False
            )
        )
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else normalizers.Sequence(steps)


def build_tokenizer(cfg: TokenizerConfig) -> tuple[Tokenizer, object]:
    """An untrained tokenizer and its trainer for ``cfg.kind``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = list(dict.fromkeys([*cfg.resolved_specials().values(), *cfg.extra_special_tokens]))
    unk = cfg.resolved_specials().get("unk")
    if cfg.kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif cfg.kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk or "[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            continuing_subword_prefix="##",
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=cfg.vocab_size,
            special_tokens=specials,
            unk_token=unk or "<unk>",
            max_piece_length=16,
            show_progress=False,
        )
    tok.normalizer = _normalizer(cfg)
    return tok, trainer


def _batches(texts: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def drop_rare_characters(texts: list[str], coverage: float, max_chars: int) -> list[str]:
    """Remove the rarest characters until the rest cover ``coverage`` of all occurrences and
    number at most ``max_chars``.

    Hugging Face's Unigram trainer insists on holding every character of its corpus, which a
    Chinese corpus (thousands of distinct characters) cannot fit in a small vocabulary;
    SentencePiece solves this with ``character_coverage``, done here as a pre-filter.
    """
    if coverage >= 1:
        return texts
    counts = Counter(c for t in texts for c in t)
    total, covered, keep = sum(counts.values()), 0, set()
    for char, n in counts.most_common():
        if covered >= coverage * total or len(keep) >= max_chars:
            break
        keep.add(char)
        covered += n
    if len(keep) == len(counts):
        return texts
    return ["".join(c for c in t if c in keep) for t in texts]


def train_tokenizer(cfg: TokenizerConfig, texts: list[str]) -> Tokenizer:
    tok, trainer = build_tokenizer(cfg)
    if cfg.kind == "unigram":
        # leave at least 10% of the vocabulary for multi-character pieces
        room = cfg.vocab_size - len(set(cfg.resolved_specials().values()))
        texts = drop_rare_characters(texts, cfg.character_coverage, max(1, int(0.9 * room)))
    try:
        if cfg.kind == "wordpiece":  # the same vocabulary every run (see tokenizer.wordpiece)
            tok = train_wordpiece(tok, trainer, lambda: _batches(texts), len(texts))
        else:
            tok.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
    except Exception as e:
        if "not large enough to contain all chars" not in str(e):
            raise
        chars = len(set().union(*map(set, texts)))
        raise DataError(
            f"tokenizer.vocab_size ({cfg.vocab_size}) is smaller than the {chars} distinct characters "
            f"of the corpus, which a unigram vocabulary must all hold; raise tokenizer.vocab_size "
            f"above {chars + len(cfg.resolved_specials())} or use kind: bpe"
        ) from None
    if cfg.kind == "wordpiece":
        from tokenizers.processors import TemplateProcessing

        s = cfg.resolved_specials()
        cls, sep = s.get("cls", "[CLS]"), s.get("sep", "[SEP]")
        tok.post_processor = TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
        )
    return tok


def to_transformers(tok: Tokenizer, cfg: TokenizerConfig) -> PreTrainedTokenizerBase:
    from transformers import PreTrainedTokenizerFast

    roles = {f"{role}_token": token for role, token in cfg.resolved_specials().items()}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=cfg.model_max_length,
        extra_special_tokens=list(cfg.extra_special_tokens) or None,
        **roles,
    )


def measure(tok: Tokenizer, texts: list[str], unk_token: str | None) -> dict[str, float]:
    """Compression and coverage on held-out text (special tokens excluded)."""
    unk_id = tok.token_to_id(unk_token) if unk_token else None
    n_tokens = n_unk = 0
    for batch in _batches(texts):
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            n_tokens += len(enc.ids)
            if unk_id is not None:
                n_unk += sum(1 for i in enc.ids if i == unk_id)
    n_chars = sum(len(t) for t in texts)
    n_words = sum(len(_WORD.findall(t)) for t in texts)
    return {
        "vocab_size": tok.get_vocab_size(),
        "chars_per_token": n_chars / n_tokens if n_tokens else 0.0,
        "tokens_per_word": n_tokens / n_words if n_words else 0.0,
        "unk_rate": n_unk / n_tokens if n_tokens else 0.0,
        "eval_characters": n_chars,
    }


def save_tokenizer(hf_tok: PreTrainedTokenizerBase, out_dir: Path) -> None:
    hf_tok.save_pretrained(str(out_dir))
