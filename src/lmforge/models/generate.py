"""Sampling text from a causal LM directory with ``transformers``' ``generate()``."""

from __future__ import annotations

from pathlib import Path

from lmforge.core.errors import LmforgeError


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
) -> str:
    """The continuation of ``prompt`` (without the prompt). ``temperature`` 0 is greedy.

    ``chat`` wraps the prompt in the model's chat template (instruction-tuned models).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.models.builtin import resolve_model_path

    directory = resolve_model_path(str(model_dir))
    try:
        tok = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory).eval()
    except (OSError, ValueError) as e:
        raise LmforgeError(f"cannot load a causal LM from {model_dir}: {e}") from None
    if chat:
        if not tok.chat_template:
            raise LmforgeError(f"{model_dir} has no chat template; drop --chat")
        enc = tok.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
    else:
        enc = tok(prompt, return_tensors="pt")
        if enc["input_ids"].shape[1] == 0:  # empty prompt: start from BOS/EOS like GPT-2 samples
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            enc = {
                "input_ids": torch.tensor([[start]]),
                "attention_mask": torch.ones(1, 1, dtype=torch.long),
            }
    torch.manual_seed(seed)
    sample = temperature > 0
    kwargs = {
        "do_sample": sample,
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tok.pad_token_id or tok.eos_token_id,
    }
    if sample:
        kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
    with torch.no_grad():
        out = model.generate(**enc, **kwargs)
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
