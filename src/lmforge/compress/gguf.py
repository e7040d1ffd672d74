"""GGUF export of causal LMs (llama.cpp, Ollama): Llama and GPT-2 architectures, in F32, F16,
Q8_0 or Q4_0, checked by reading the file back.

The files follow llama.cpp's ``convert_hf_to_gguf.py``:

- ``LlamaForCausalLM``: tensor names ``token_embd``, ``blk.N.attn_q|k|v|output``,
  ``blk.N.ffn_gate|up|down``, ``attn_norm``, ``ffn_norm``, ``output_norm``, ``output`` (absent
  when tied); Q and K rows permuted into llama.cpp's rotary layout.
- ``GPT2LMHeadModel`` (the ``gpt-tiny`` preset): ``token_embd``, ``position_embd``,
  ``blk.N.attn_norm`` / ``ffn_norm`` (weight and bias), ``attn_qkv``, ``attn_output``,
  ``ffn_up``, ``ffn_down`` (GPT-2's Conv1D weights transposed to (out, in)), ``output_norm``
  and ``output`` (written even when tied to the embedding, as the converter does).

The tokenizer is a byte-level BPE as ``tokenizer.ggml.model = gpt2`` (tokens, merges, token
types, special ids). Types, as ``convert_hf_to_gguf --outtype`` chooses them: 1-D tensors
(norms, biases) and GPT-2's position embedding stay F32; every 2-D weight becomes the chosen
type, quantized with gguf-py's reference quantizer (``gguf.quants``: Q8_0 = int8 in blocks of
32 with one f16 scale, 8.5 bits per weight; Q4_0 = 4-bit in blocks of 32, 4.5 bits); a matrix
whose rows are not a multiple of 32 falls back to F16, as llama.cpp does. With Q4_0 the token
embedding and output layer are Q8_0: llama-quantize keeps them at Q6_K (they cost the most
quality at 4 bits; measured on SmolLM2-135M, all-Q4_0 raised perplexity 84 -> 117), and gguf-py
has no Q6_K quantizer.

The check: transformers reads the file back (``from_pretrained(dir, gguf_file=...)``, which
undoes the permutation and dequantizes), and its logits on a few prompts must match the
source model's within ``atol`` (F32 exact to float rounding; F16/Q8_0/Q4_0 within their
rounding, so their default tolerance is wider; see ``DEFAULT_ATOL``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.compress.artifact import Compressed
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


def gpt2_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """(GGUF name, fp32 numpy array) for every tensor of a ``GPT2LMHeadModel``."""
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    yield "token_embd.weight", sd["transformer.wte.weight"]
    yield "position_embd.weight", sd["transformer.wpe.weight"]
    # GPT-2's Conv1D stores (in, out); GGUF wants (out, in) like a Linear
    names = {
        "ln_1": ("attn_norm", False),
        "attn.c_attn": ("attn_qkv", True),
        "attn.c_proj": ("attn_output", True),
        "ln_2": ("ffn_norm", False),
        "mlp.c_fc": ("ffn_up", True),
        "mlp.c_proj": ("ffn_down", True),
    }
    for i in range(model.config.n_layer):
        for hf, (gg, conv1d) in names.items():
            weight = sd[f"transformer.h.{i}.{hf}.weight"]
            yield f"blk.{i}.{gg}.weight", weight.T.copy() if conv1d else weight
            yield f"blk.{i}.{gg}.bias", sd[f"transformer.h.{i}.{hf}.bias"]
    yield "output_norm.weight", sd["transformer.ln_f.weight"]
    yield "output_norm.bias", sd["transformer.ln_f.bias"]
    yield "output.weight", sd.get("lm_head.weight", sd["transformer.wte.weight"])


def _llama_header(writer: Any, cfg: Any) -> None:
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_theta", None) or (cfg.rope_parameters or {}).get("rope_theta")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads or cfg.num_attention_heads)
    writer.add_rope_freq_base(float(rope or 10000.0))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)


def _gpt2_header(writer: Any, cfg: Any) -> None:
    writer.add_block_count(cfg.n_layer)
    writer.add_context_length(cfg.n_positions)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_feed_forward_length(cfg.n_inner or 4 * cfg.n_embd)
    writer.add_head_count(cfg.n_head)
    writer.add_layer_norm_eps(cfg.layer_norm_epsilon)


# model_type -> (header writer, tensors); GGUF's architecture name is the model_type
ARCHITECTURES = {"llama": (_llama_header, llama_tensors), "gpt2": (_gpt2_header, gpt2_tensors)}
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0")
# default |logit| tolerance of the read-back check per type, on logits of magnitude ~10: F16
# rounds each weight to 11 significant bits, Q8_0 to 8 bits per block, Q4_0 to 4
DEFAULT_ATOL = {"f32": 1e-4, "f16": 0.05, "q8_0": 0.5, "q4_0": 3.0}


def unsupported_reason(config: Any) -> str | None:
    """Why llama.cpp's architecture would compute something else than this model, or None."""
    if config.model_type not in ARCHITECTURES:
        return (
            f"GGUF export supports Llama- and GPT-2-architecture models (llama-tiny, "
            f"smollm2-135m, gpt-tiny), not {config.model_type!r}"
        )
    if config.model_type == "gpt2":
        # llama.cpp's gpt2 graph: tanh-approximated GELU, attention scaled by 1/sqrt(head_dim)
        if config.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            return f"llama.cpp's GPT-2 uses tanh GELU, this model {config.activation_function!r}"
        if not config.scale_attn_weights or config.scale_attn_by_inverse_layer_idx:
            return "llama.cpp's GPT-2 scales attention by 1/sqrt(head_dim) only"
    return None


FILE_TYPES = {  # general.file_type: what llama.cpp reports as the model's type
    "f32": lambda g: g.LlamaFileType.ALL_F32,
    "f16": lambda g: g.LlamaFileType.MOSTLY_F16,
    "q8_0": lambda g: g.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": lambda g: g.LlamaFileType.MOSTLY_Q4_0,
}


def _add_tensor(writer: Any, name: str, array: Any, kind: str) -> str:
    """Add ``array`` as ``kind`` (f32/f16/q8_0/q4_0) following convert_hf_to_gguf's choices;
    returns the GGML type written."""
    import gguf
    import numpy as np

    if kind == "f32" or array.ndim < 2 or name == "position_embd.weight":
        writer.add_tensor(name, array.astype(np.float32))
        return "F32"
    if kind == "q4_0" and name in ("token_embd.weight", "output.weight"):
        kind = "q8_0"  # llama-quantize keeps these at Q6_K, which gguf-py cannot write
    if kind != "f16":
        qtype = gguf.GGMLQuantizationType[kind.upper()]
        try:
            data = gguf.quants.quantize(array.astype(np.float32), qtype)
        except gguf.quants.QuantError:  # rows not a multiple of the block size (32)
            pass
        else:
            writer.add_tensor(name, data, raw_dtype=qtype)
            return qtype.name
    writer.add_tensor(name, array.astype(np.float16))
    return "F16"


def write_gguf(model: Any, tokenizer: Any, path: Path, kind: str = "f32") -> dict[str, int]:
    """Write ``model`` (Llama or GPT-2 causal LM) and its tokenizer as one GGUF file whose 2-D
    weights are ``kind``. Returns how many tensors were written per GGML type.

    Raises:
        ValueError: an architecture or tokenizer GGUF cannot describe (message says which).
    """
    import gguf

    reason = unsupported_reason(model.config)
    if reason:
        raise ValueError(reason)
    cfg = model.config
    header, tensors = ARCHITECTURES[cfg.model_type]
    tokens, merges, types = bpe_vocab(tokenizer, cfg.vocab_size)
    writer = gguf.GGUFWriter(str(path), cfg.model_type)
    writer.add_name(Path(path).parent.name)
    header(writer, cfg)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(FILE_TYPES[kind](gguf))
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
    written: dict[str, int] = {}
    for name, array in tensors(model):
        ggml = _add_tensor(writer, name, array, kind)
        written[ggml] = written.get(ggml, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


def gguf_logit_check(model: Any, tokenizer: Any, directory: Path) -> dict[str, float]:
    """How far the GGUF file read back by transformers is from ``model`` over ``PROMPTS``:
    ``max_abs_diff`` (largest |logit| difference), ``rel_diff`` (that over the largest
    |logit|) and ``top1_agreement`` (share of positions with the same next token).

    The config comes from ``config.json`` beside the file: transformers' GGUF config mapping
    for GPT-2 drops the context length and MLP width (it would build a 1024-position model).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    back = AutoModelForCausalLM.from_pretrained(
        directory,
        gguf_file=GGUF_FILE,
        config=AutoConfig.from_pretrained(directory),
        dtype=torch.float32,
    ).eval()
    worst = largest = 0.0
    same = positions = 0
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            ref, got = model(input_ids=ids).logits, back(input_ids=ids).logits
            worst = max(worst, (ref - got).abs().max().item())
            largest = max(largest, ref.abs().max().item())
            same += (ref.argmax(-1) == got.argmax(-1)).sum().item()
            positions += ids.numel()
    return {
        "max_abs_diff": worst,
        "rel_diff": worst / largest if largest else 0.0,
        "top1_agreement": same / positions,
    }


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

    reason = unsupported_reason(model.config)
    if reason:
        raise run.fail("format", reason)
    kind = run.step.gguf_type
    model = model.float().eval()
    try:
        written = write_gguf(model, tokenizer, run.out / GGUF_FILE, kind)
    except ValueError as e:
        raise run.fail("format", str(e)) from None
    tensors = len(gguf.GGUFReader(run.out / GGUF_FILE).tensors)
    model.config.save_pretrained(run.out)  # the check reads it (see gguf_logit_check)
    check = gguf_logit_check(model, tokenizer, run.out)
    atol = run.step.atol if run.step.atol is not None else DEFAULT_ATOL[kind]
    if not check["max_abs_diff"] <= atol:
        raise run.fail(
            "atol",
            f"the {kind.upper()} GGUF model read back gives logits {check['max_abs_diff']:.3g} "
            f"away from PyTorch's (> {atol:g}); the export is wrong for this model, or "
            f"{kind} rounds it more than atol allows",
        )
    art = run.save("gguf", tokenizer, file=GGUF_FILE, gguf_type=kind)
    return art, {**check, "tensors": tensors, "file_type": kind.upper(), "ggml_types": written}
