"""``lmforge generate``: load a causal LM by reference and sample from it (through the one
generation loop, ``lmforge.models.sampling``).

The model is a causal-LM directory (``RUN/pretrain/model`` of a ``clm`` run), a built-in
(``smollm2-135m``), or an instruction fine-tune of a run (``RUN/finetune/model``, adapter or
whole, loaded through ``load_artifact`` so a moved run still works). Anything that cannot
continue text - a masked LM, a bare encoder, a classifier, an encoder-decoder - is refused by
name rather than made to print tokens from a head it was never trained with. The prompt and the
new tokens must fit the model's context: ``max_new_tokens`` is clipped to the room left, and a
prompt that fills the context alone is refused, both naming the context length.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger
from lmforge.models.sampling import (
    prompt_ids,
)

if TYPE_CHECKING:
    from lmforge.explain.control import Guards

NEEDS = (
    "lmforge generate needs a decoder-only causal LM: a pretrain/model trained with objective "
    "clm, an instruction fine-tune (RUN/finetune/model or merged), or smollm2-135m"
)


def check_text(prompt: str) -> None:
    """Refuse a prompt that is not text: undecodable bytes in argv reach Python as lone
    surrogates (PEP 383), which tokenizers reject with a bare TypeError."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(prompt[e.start])
        byte = f" (byte 0x{code - 0xDC00:02x})" if 0xDC80 <= code <= 0xDCFF else ""
        raise LmforgeError(
            f"the prompt is not valid UTF-8: character {e.start}{byte} is not text; pass UTF-8 "
            "(a GBK file converts with `iconv -f gbk -t utf-8`)"
        ) from None


def check_can_generate(config: Any, name: str) -> None:
    """Raise unless ``config`` (a transformers config) is a decoder-only causal LM.

    BERT's ``BertLMHeadModel`` is in transformers' causal-LM table, so a masked LM or a bare
    encoder would load there and "generate"; so would a GPT-2 classifier's body.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    causal = {
        n
        for names in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
        for n in ((names,) if isinstance(names, str) else names)
    }
    architectures = list(getattr(config, "architectures", None) or [])
    what = None
    if getattr(config, "is_encoder_decoder", False):
        what = f"an encoder-decoder ({config.model_type!r})"
    elif config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.is_decoder:
        what = f"an encoder ({', '.join(architectures) or config.model_type})"
    elif architectures and not any(a in causal for a in architectures):
        what = f"a {', '.join(architectures)}"
    if what is not None:
        raise LmforgeError(f"{name} is {what}, which cannot generate text; {NEEDS}")


def fit_context(config: Any, prompt_tokens: int, max_new_tokens: int, name: str) -> int:
    """``max_new_tokens`` clipped to the room the prompt leaves in the model's context (past it
    GPT-2's position table raises IndexError after all the work, losing the output)."""
    from lmforge.models.sampling import context_limit

    limit = context_limit(config)
    if limit is None:
        return max_new_tokens
    if prompt_tokens >= limit:
        raise LmforgeError(
            f"the prompt is {prompt_tokens} tokens, but {name} reads at most {limit} tokens "
            "(its context length) and must have room to write; shorten the prompt"
        )
    room = limit - prompt_tokens
    if max_new_tokens > room:
        logger.warning(
            "generate: max_new_tokens %d clipped to %d: %s's context is %d tokens and the "
            "prompt takes %d",
            max_new_tokens,
            room,
            name,
            limit,
            prompt_tokens,
        )
        return room
    return max_new_tokens


def load_generator(model_ref: str | Path) -> tuple[Any, Any]:
    """(causal LM in eval mode, tokenizer) for a directory or built-in name, or a clear error."""
    import json

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from lmforge.tasks.artifact import inspect_artifact, load_artifact

    files = inspect_artifact(model_ref)  # a built-in name resolves to its directory
    manifest = files.manifest
    if files.task is not None and files.task.name != "instruction":
        raise LmforgeError(
            f"{model_ref} is a {files.task.name!r} model (its lmforge.json): it predicts for "
            f"that task and cannot generate text; {NEEDS}"
        )
    if files.base is not None and manifest is None:  # a peft adapter saved without lmforge
        config = json.loads((files.path / "adapter_config.json").read_text(encoding="utf-8"))
        if config.get("task_type") != "CAUSAL_LM":
            raise LmforgeError(
                f"{model_ref} is a peft adapter for {config.get('task_type')!r}, which cannot "
                f"generate text; {NEEDS}"
            )
    if files.task is not None or files.base is not None:  # an instruction fine-tune
        art = load_artifact(files.path, task="instruction")
        return art.model, art.processor
    try:
        config = AutoConfig.from_pretrained(files.path)
    except (OSError, ValueError) as e:
        raise LmforgeError(f"cannot load a model config from {model_ref}: {e}") from None
    if manifest is not None and manifest.objective not in (None, "clm"):
        raise LmforgeError(
            f"{model_ref} was pretrained with objective {manifest.objective!r} (its lmforge.json), "
            f"which does not continue text; {NEEDS}"
        )
    check_can_generate(config, str(model_ref))
    try:
        tok = AutoTokenizer.from_pretrained(files.path)
        model = AutoModelForCausalLM.from_pretrained(files.path).eval()
    except (OSError, ValueError) as e:
        raise LmforgeError(f"cannot load a causal LM from {model_ref}: {e}") from None
    return model, tok


def generate_text(
    model_dir: str | Path,
    prompt: str,
    *,
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int = 0,
    chat: bool = False,
    guards: Guards | None = None,
) -> str:
    """The continuation of ``prompt`` (without the prompt). ``temperature`` 0 is greedy.

    ``chat`` wraps the prompt in the model's chat template (instruction-tuned models).
    ``guards`` (``lmforge.explain.control``) ban phrases, stop at sequences, cap the length,
    constrain the output to a regex or JSON schema, and gate prompt and response.

    Raises:
        LmforgeError: the gate refuses the prompt or withholds the response.
    """
    from dataclasses import replace

    from lmforge.explain.control import Guards, guarded_generate

    check_text(prompt)
    model, tok = load_generator(model_dir)
    if chat:
        if not tok.chat_template:
            raise LmforgeError(f"{model_dir} has no chat template; drop --chat")
        turn = [{"role": "user", "content": prompt}]
        ids = list(
            tok.apply_chat_template(turn, add_generation_prompt=True, return_dict=True)["input_ids"]
        )
    else:
        ids = prompt_ids(tok, prompt)
    max_new_tokens = fit_context(model.config, len(ids), max_new_tokens, str(model_dir))
    guards = replace(guards or Guards(), max_new_tokens=max_new_tokens)
    out = guarded_generate(
        model, tok, prompt, guards, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
        ids=ids,
    )  # fmt: skip
    if out.refused is not None:
        where, flag = out.refused.split(": ", 1)
        what = "the prompt is refused" if where == "prompt" else "the response is withheld"
        raise LmforgeError(f"{what}: the gate classifies it as {flag!r}")
    return out.text
