"""GGUF export of Llama-architecture causal LMs (llama.cpp, Ollama), checked by reading back.

The file follows llama.cpp's ``convert_hf_to_gguf.py`` for ``LlamaForCausalLM``: tensor names
``token_embd``, ``blk.N.attn_q|k|v|output``, ``blk.N.ffn_gate|up|down``, ``attn_norm``,
``ffn_norm``, ``output_norm``, ``output`` (absent when tied); Q and K rows permuted into
llama.cpp's rotary layout; a byte-level BPE tokenizer as ``tokenizer.ggml.model = gpt2``
(tokens, merges, token types, special ids). Weights are written in fp32 (``general.file_type``
0): llama.cpp's own ``llama-quantize`` makes Q8_0/Q4_K from it.

The check: transformers reads the file back (``from_pretrained(dir, gguf_file=...)``, which
undoes the permutation and dequantises), and its logits on a few prompts must match the
source model's within ``atol``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.compress.artifact import Compressed, save_compressed
from lmforge.compress.methods import StepRun

GGUF_FILE = "model.gguf"
PROMPTS = ("The meaning of", "Once upon a time there was", "A B C 1 2 3")


def permute_rotary(w: Any, n_head: int) -> Any:
    """HF's rotate-half Q/K rows -> llama.cpp's interleaved layout (convert_hf_to_gguf)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def llama_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """(GGUF name, fp32 numpy array) for every tensor of a ``LlamaForCausalLM``."""
    cfg = model.config
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
    yield "token_embd.weight", sd["model.embed_tokens.weight"]
    names = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        yield (
            f"blk.{i}.attn_q.weight",
            permute_rotary(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads),
        )
        yield f"blk.{i}.attn_k.weight", permute_rotary(sd[p + "self_attn.k_proj.weight"], n_kv)
        for hf, gg in names.items():
            yield f"blk.{i}.{gg}.weight", sd[f"{p}{hf}.weight"]
    yield "output_norm.weight", sd["model.norm.weight"]
    if not cfg.tie_word_embeddings:
        yield "output.weight", sd["lm_head.weight"]


def bpe_vocab(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[str], list[int]]:
    """(tokens by id, merges "a b", token types) of a byte-level BPE tokenizer.

    Raises:
        ValueError: not a BPE tokenizer (WordPiece / Unigram have no GGUF ``gpt2`` form).
    """
    import json

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"GGUF export needs a BPE tokenizer, this one is {model.get('type')}")
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    special = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for i in range(vocab_size):  # the embedding may have more rows than the tokenizer tokens
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(3 if i in special else (1 if i in by_id else 5))  # control/normal/unused
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, merges, types


def write_llama_gguf(model: Any, tokenizer: Any, path: Path) -> None:
    """Write ``model`` (LlamaForCausalLM) and its tokenizer as one fp32 GGUF file."""
    import gguf

    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_theta", None) or (cfg.rope_parameters or {}).get("rope_theta")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(Path(path).parent.name)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads or cfg.num_attention_heads)
    writer.add_rope_freq_base(float(rope or 10000.0))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, merges, types = bpe_vocab(tokenizer, cfg.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(types)
    for name in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{name}_token_id")(token_id)
    writer.add_add_bos_token(False)
    for name, array in llama_tensors(model):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_max_diff(model: Any, tokenizer: Any, directory: Path) -> float:
    """Largest |logit| difference between ``model`` and the GGUF file read back by
    transformers, over ``PROMPTS``."""
    import torch
    from transformers import AutoModelForCausalLM

    back = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=GGUF_FILE, dtype=torch.float32
    ).eval()
    worst = 0.0
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            diff = (model(input_ids=ids).logits - back(input_ids=ids).logits).abs().max()
            worst = max(worst, diff.item())
    return worst


def load_causal_lm(path: Path) -> tuple[Any, Any]:
    """(causal LM, tokenizer) of a pretrain stage's model or an instruction fine-tune: plain
    transformers, adapters merged (``load_artifact`` when the manifest names a task)."""
    from transformers import AutoModelForCausalLM

    from lmforge.compress.artifact import load_compressed
    from lmforge.tasks.artifact import inspect_artifact
    from lmforge.tasks.base import load_tokenizer

    if inspect_artifact(path).task is not None:
        model, tokenizer, _, _ = load_compressed(path)
        return model, tokenizer
    return AutoModelForCausalLM.from_pretrained(path).eval(), load_tokenizer(path)


def export_gguf(run: StepRun, model: Any, tokenizer: Any) -> tuple[Compressed, dict[str, Any]]:
    """The ``export`` step with ``format: gguf``: write, read back, compare, save the manifest."""
    import gguf

    if model.config.model_type != "llama":
        raise run.fail(
            "format",
            f"GGUF export supports Llama-architecture models (llama-tiny, smollm2-135m), not "
            f"{model.config.model_type!r}",
        )
    model = model.float().eval()
    try:
        write_llama_gguf(model, tokenizer, run.out / GGUF_FILE)
    except ValueError as e:
        raise run.fail("format", str(e)) from None
    tensors = len(gguf.GGUFReader(run.out / GGUF_FILE).tensors)
    diff = gguf_max_diff(model, tokenizer, run.out)
    if not diff <= run.step.atol:
        raise run.fail(
            "atol",
            f"the GGUF model read back gives logits {diff:.3g} away from PyTorch's "
            f"(> {run.step.atol:g}); the export is wrong for this model",
        )
    tokenizer.save_pretrained(run.out)
    model.config.save_pretrained(run.out)
    art = save_compressed(
        run.out, run.source, "gguf", run.location, method="export", file=GGUF_FILE
    )
    return art, {"max_abs_diff": diff, "tensors": tensors, "file_type": "F32"}
