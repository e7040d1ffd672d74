"""Weight-only int8 / int4 quantization of Linear layers, stored in safetensors.

Symmetric, round-to-nearest, no calibration data:

- int8: one fp32 scale per output row, ``scale = max|w_row| / 127``, ``q = round(w / scale)``
  in [-127, 127], stored as ``int8`` (1 byte a weight);
- int4: one fp32 scale per ``group_size`` consecutive inputs of a row (GPTQ / llama.cpp Q4_0
  style groups), ``scale = w_peak / -8`` with ``w_peak`` the group's largest-magnitude weight
  (Q4_0's rule: all 16 levels used, the peak exact), ``q`` in [-8, 7] stored as ``q + 8`` two
  to a byte: the even input column in the low nibble, the odd one in the high nibble (``uint8``,
  half a byte a weight plus 4 bytes per group).

GPT-2's ``Conv1D`` layers store their weight as (in, out) and are quantized in that stored
layout (scales per input row / groups of outputs): the file and its reader stay one format.

The file (``WEIGHT_ONLY_FILE``) holds, per quantized Linear ``name``, ``name.weight.qdata`` and
``name.weight.scale`` (shape ``(out, in / group)``; int8: ``group = in``), and every other
tensor of the state dict unchanged under its own name; its metadata says ``bits`` and
``group_size``. Loading dequantizes to fp32 once (``dequantize_state``) and builds the model
from ``config.json``: the file is 4x (int8) or ~7x (int4, group 32) smaller than fp32, the
model in memory and its speed are fp32's. Measured on this CPU (torch 2.13, 1 thread, 768x768):
torch's int8 weight-only kernel ``_weight_int8pack_mm`` ran 11x slower than the fp32 matmul at
batch 1, and torchao 0.18's CPU int4 layout is gone (its int4 needs GPU kernels), so no
faster int kernel was there to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHT_ONLY_FILE = "model_weight_only.safetensors"
FORMAT_TAG = "lmforge-weight-only"


def quantize_weight(weight: Any, bits: int, group_size: int) -> tuple[Any, Any]:
    """(qdata, scale) of a 2-D fp32 weight (out, in): int8 per row, or packed int4 per group.

    Raises:
        ValueError: int4 with ``in`` not a multiple of ``group_size`` or ``group_size`` odd.
    """
    import torch

    w = weight.detach().float()
    out_f, in_f = w.shape
    group = in_f if bits == 8 else group_size
    if in_f % group or group % 2:
        raise ValueError(f"{in_f} inputs do not split into even groups of {group}")
    grouped = w.reshape(out_f, in_f // group, group)  # (out, groups, group)
    if bits == 8:
        low, high = -127, 127
        scale = grouped.abs().amax(-1) / high  # (out, groups)
    else:  # llama.cpp's Q4_0 trick: the largest-magnitude weight maps to -8, all 16 levels used
        low, high = -8, 7
        peak = grouped.gather(-1, grouped.abs().argmax(-1, keepdim=True)).squeeze(-1)
        scale = peak / low  # (out, groups), negative where the peak is positive
    scale = torch.where(scale != 0, scale, torch.ones_like(scale))  # an all-zero group stays 0
    q = torch.round(grouped / scale[..., None]).clamp(low, high).reshape(out_f, in_f)
    if bits == 8:
        return q.to(torch.int8), scale
    u = (q + 8).to(torch.uint8)  # [1, 15]
    return u[:, 0::2] | (u[:, 1::2] << 4), scale  # (out, in / 2)


def dequantize_weight(qdata: Any, scale: Any) -> Any:
    """The fp32 weight (out, in) of ``quantize_weight``'s output (int8 or packed int4)."""
    import torch

    if qdata.dtype == torch.uint8:  # packed int4: low nibble even column, high nibble odd
        q = torch.stack([qdata & 0xF, qdata >> 4], dim=-1).reshape(qdata.shape[0], -1)
        q = q.float() - 8
    else:
        q = qdata.float()
    out_f, in_f = q.shape
    groups = scale.shape[1]
    return (q.reshape(out_f, groups, in_f // groups) * scale[..., None]).reshape(out_f, in_f)


def quantizable_linears(model: Any) -> dict[str, Any]:
    """Every ``nn.Linear`` and transformers ``Conv1D`` (GPT-2's linear layers) by module name,
    except those whose weight is shared with another parameter (a tied output layer must stay
    tied to its embedding)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear | Conv1D) and counts.get(id(m.weight), 0) == 1
    }


def save_weight_only(model: Any, path: Path, bits: int, group_size: int) -> dict[str, Any]:
    """Write ``model``'s state dict to ``path`` with its Linear weights quantized; returns
    what was done (layers, stored bytes of the quantized weights vs fp32, worst weight error).

    Raises:
        ValueError: a Linear's inputs do not split into groups of ``group_size`` (int4).
    """
    from safetensors.torch import save_file

    linears = quantizable_linears(model)
    tensors, stored_at = {}, {}
    for key, value in model.state_dict().items():
        if value.data_ptr() in stored_at:  # a tied copy (output layer = embedding): once
            continue
        stored_at[value.data_ptr()] = key
        tensors[key] = value.detach().float().contiguous().clone()
    stored = fp32 = 0
    worst = 0.0
    for name, module in linears.items():
        try:
            qdata, scale = quantize_weight(module.weight, bits, group_size)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        del tensors[f"{name}.weight"]
        tensors[f"{name}.weight.qdata"], tensors[f"{name}.weight.scale"] = qdata, scale
        stored += qdata.numel() * qdata.element_size() + scale.numel() * 4
        fp32 += module.weight.numel() * 4
        error = (dequantize_weight(qdata, scale) - module.weight.detach().float()).abs().max()
        worst = max(worst, error.item())
    metadata = {"format": FORMAT_TAG, "bits": str(bits), "group_size": str(group_size)}
    save_file(tensors, str(path), metadata=metadata)
    return {
        "quantized_linears": len(linears),
        "linear_weight_bytes": stored,
        "linear_weight_bytes_fp32": fp32,
        "max_abs_weight_error": worst,
    }


def dequantize_state(path: Path) -> dict[str, Any]:
    """The fp32 state dict stored in a ``save_weight_only`` file."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    state = {k: v for k, v in tensors.items() if not k.endswith((".qdata", ".scale"))}
    for key in tensors:
        if key.endswith(".weight.qdata"):
            name = key.removesuffix(".qdata")
            state[name] = dequantize_weight(tensors[key], tensors[f"{name}.scale"])
    return state


def load_weight_only(path: Path, head: Any) -> Any:
    """The model in directory ``path`` (config.json + ``WEIGHT_ONLY_FILE``) built with the
    transformers auto class ``head``, its weights dequantized to fp32."""
    from transformers import AutoConfig

    from lmforge.core.errors import LmforgeError

    model = head.from_config(AutoConfig.from_pretrained(path))
    result = model.load_state_dict(dequantize_state(Path(path) / WEIGHT_ONLY_FILE), strict=False)
    seen: set[int] = set()
    tied = set()  # keys sharing storage with an earlier one: saved once, filled by that one
    for key, value in model.state_dict().items():
        if value.data_ptr() in seen:
            tied.add(key)
        seen.add(value.data_ptr())
    if result.unexpected_keys or set(result.missing_keys) - tied:
        raise LmforgeError(
            f"{path}: {WEIGHT_ONLY_FILE} does not match config.json (missing "
            f"{sorted(set(result.missing_keys) - tied)[:3]}, unexpected "
            f"{result.unexpected_keys[:3]}); re-run the quantize step"
        )
    return model.eval()
