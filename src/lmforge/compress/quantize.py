"""``quantize``: dynamic int8 of Linear layers (ONNX Runtime's quantizer or torch.ao's
``quantize_dynamic``), weight-only int8/int4 storage (``compress.weightonly``) and bf16/fp16
weights.

Dynamic int8 stores weights as int8 and quantizes activations per batch at run time: no
calibration data. The kernels that run: ONNX Runtime's ``MatMulInteger`` (counted in the
graph) and torch's ``quantized::linear_dynamic`` on the fbgemm/x86 engine (counted as
``torch.ao.nn.quantized.dynamic.Linear`` modules). bf16/fp16 halve the file; whether they are
faster depends on the CPU (AMX / AVX512-BF16), so the stage measures rather than assumes.
"""

from __future__ import annotations

from typing import Any

from lmforge.compress.artifact import (
    ONNX_FILE,
    TORCH_INT8_FILE,
    Compressed,
    load_compressed,
)
from lmforge.compress.methods import METHODS, Method, StepRun

TASKS = ("classification", "token-classification")


def quantize_torch(model: Any, modules: list[str]) -> Any:
    """``model`` with its ``modules`` types (Linear, LSTM, GRU) dynamically quantized to int8."""
    import warnings

    import torch

    types = {getattr(torch.nn, name) for name in modules}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated but maintained
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, types, dtype=torch.qint8)


def count_int8_modules(model: Any) -> int:
    import torch

    kinds = (torch.ao.nn.quantized.dynamic.Linear, torch.ao.nn.quantized.dynamic.LSTM)
    return sum(isinstance(m, kinds) for m in model.modules())


def count_onnx_ops(path: Any, op: str) -> int:
    import onnx

    return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)


def _torch_int8(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    import torch

    model, processor, _, _ = load_compressed(run.source.path, crf=False)
    quantized = quantize_torch(model.float(), run.step.modules)
    count = count_int8_modules(quantized)
    if count == 0:
        raise run.fail("modules", f"the model has no {run.step.modules} layers to quantize")
    torch.save(quantized.state_dict(), run.out / TORCH_INT8_FILE)
    model.config.save_pretrained(run.out)
    art = run.save("torch-int8", processor, scheme="int8-dynamic", modules=run.step.modules)
    engine = torch.backends.quantized.engine
    return art, {
        "int8_modules": count,
        "kernel": f"quantized::linear_dynamic ({engine})",
    }


def _onnx_int8(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from lmforge.compress.export import export_onnx, onnx_max_diff, parity_batches

    with tempfile.TemporaryDirectory() as tmp:
        model, processor, _, _ = load_compressed(run.source.path, crf=False)
        if run.source.format == "onnx":
            fp32 = run.source.path / ONNX_FILE
        else:  # export first: the quantizer works on ONNX graphs
            fp32 = export_onnx(model.float(), Path(tmp), 18)
        target = run.out / ONNX_FILE
        quantize_dynamic(fp32, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        count = count_onnx_ops(target, "MatMulInteger")
        if count == 0:
            raise run.fail("modules", "ONNX Runtime quantized no MatMul of this model")
        facts: dict[str, Any] = {
            "int8_matmuls": count,
            "kernel": "MatMulInteger (onnxruntime)",
        }
        if run.source.format != "onnx":  # int8 is not exact: record how far it moved
            facts["max_abs_diff"] = onnx_max_diff(
                model, target, parity_batches(model.config.vocab_size)
            )
    art = run.save("onnx", processor, scheme="int8-dynamic", file=ONNX_FILE)
    return art, facts


def _half(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    import torch

    dtype = torch.bfloat16 if run.step.scheme == "bf16" else torch.float16
    model, processor, _, _ = load_compressed(run.source.path, crf=False)
    model.to(dtype).save_pretrained(run.out)
    art = run.save("transformers", processor, scheme=run.step.scheme)
    return art, {"dtype": str(dtype).removeprefix("torch.")}


def _weight_only(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    from lmforge.compress.weightonly import WEIGHT_ONLY_FILE, save_weight_only

    step = run.step
    bits = 8 if step.scheme == "int8-weight" else 4
    if step.modules != ["Linear"]:
        raise run.fail("modules", f"{step.scheme} quantizes Linear layers only")
    model, processor, _, _ = load_compressed(run.source.path, crf=False)
    try:
        facts = save_weight_only(model.float(), run.out / WEIGHT_ONLY_FILE, bits, step.group_size)
    except ValueError as e:
        raise run.fail("group_size", f"{e}; pick a group_size that divides them") from None
    if facts["quantized_linears"] == 0:
        raise run.fail("modules", "the model has no Linear layers to quantize")
    model.config.save_pretrained(run.out)
    settings: dict[str, Any] = {"bits": bits}
    if bits == 4:
        settings["group_size"] = step.group_size
    art = run.save("weight-only", processor, scheme=step.scheme, file=WEIGHT_ONLY_FILE, **settings)
    kernel = "fp32 matmul (weights dequantized once at load; the saving is on disk)"
    return art, {**facts, "bits": bits, "kernel": kernel}


def run_quantize(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    step = run.step
    if step.scheme in ("int8-weight", "int4-weight"):
        if run.source.format != "transformers":
            raise run.fail(
                "scheme",
                f"{step.scheme} needs a transformers model, not {run.source.format}",
            )
        return _weight_only(run)
    if step.scheme != "int8-dynamic":
        if run.source.format != "transformers":
            raise run.fail(
                "scheme",
                f"{step.scheme} needs a transformers model, not {run.source.format}",
            )
        return _half(run)
    if step.engine == "torch":
        if run.source.format != "transformers":
            raise run.fail(
                "engine",
                f"torch quantizes a transformers model, not {run.source.format}",
            )
        return _torch_int8(run)
    if run.source.format == "torch-int8":
        raise run.fail(
            "input",
            "the input is already int8 (torch); quantize the fp32 model instead",
        )
    return _onnx_int8(run)


def _reads(step: Any) -> tuple[str, ...]:
    if step.scheme == "int8-dynamic" and step.engine == "onnxruntime":
        return ("transformers", "onnx")  # a transformers model is exported first
    return ("transformers",)


METHODS.add("quantize", Method("quantize", TASKS, _reads, run_quantize))
