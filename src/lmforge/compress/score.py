"""Score one artefact the way the evaluate stage does, whatever its format.

Quality comes from the task's own ``encode``/``predict``/``metrics`` (the evaluate stage's
code) on the same test examples for every artefact; size on disk from evaluate's
``dir_megabytes``. Latency (p50/p95 per batch size), throughput and peak RSS are measured in
a fresh ``spawn`` process that loads the artefact from disk as a server would, like
``evaluate.profile`` but for ONNX and int8 models too.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from lmforge.core.memory import peak_rss_mb
from lmforge.core.metrics import numbers


def count_params(model: Any, path: Path) -> int:
    """Parameters of a loaded artefact: ONNX initializers, int8 packed weights, or tensors."""
    from lmforge.compress.artifact import OnnxModel, onnx_params

    if isinstance(model, OnnxModel):
        return onnx_params(path / "model.onnx")
    import torch

    total = sum(p.numel() for p in model.parameters())
    for m in model.modules():  # dynamic int8 Linear keeps its weight packed, not as a parameter
        if isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            w, b = m._packed_params._weight_bias()
            total += w.numel() + (b.numel() if b is not None else 0)
    return total


def footprint(path: Path) -> dict[str, Any]:
    """Parameters and size on disk of an artefact no task scores (GGUF, a pretrained LM)."""
    import math

    from lmforge.compress.artifact import artifact_format
    from lmforge.evaluate.profile import dir_megabytes

    if artifact_format(path).format == "gguf":
        import gguf

        params = sum(int(t.n_elements) for t in gguf.GGUFReader(path / "model.gguf").tensors)
    else:
        from safetensors import safe_open

        params = 0
        for f in path.glob("*.safetensors"):
            with safe_open(f, "pt") as st:
                params += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118
    return {"params": params, "size_mb": dir_megabytes(path)}


def quality(path: Path, docs: list[Any], fcfg: Any) -> dict[str, Any]:
    """The task's metrics on ``docs`` plus parameters and size on disk."""
    from lmforge.compress.artifact import load_compressed
    from lmforge.evaluate.profile import dir_megabytes

    model, processor, task, info = load_compressed(path)
    enc = task.encode(processor, docs, info, fcfg, "test")
    t0 = time.perf_counter()
    predictions = task.predict(model, enc, processor, info, fcfg)
    seconds = time.perf_counter() - t0
    scores = task.metrics(enc.references, predictions, info)
    return {
        **numbers(scores),
        "quality_metric": task.main_metric,
        "quality": scores[task.main_metric],
        "params": count_params(model, path),
        "size_mb": dir_megabytes(path),
        "predict_seconds": seconds,
    }


def latency(model: Any, batches: dict[int, dict[str, Any]], repeats: int) -> dict[str, float]:
    """p50/p95 forward milliseconds and examples/s (at p50) per batch size."""
    from lmforge.evaluate.profile import forward_seconds

    out: dict[str, float] = {}
    for size, batch in sorted(batches.items()):
        times = sorted(forward_seconds(model, batch, repeats))
        p50 = statistics.median(times)
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        out[f"latency_ms_p50_b{size}"] = p50 * 1000
        out[f"latency_ms_p95_b{size}"] = p95 * 1000
        out[f"examples_per_s_b{size}"] = size / p50
    return out


def load_model(path: Path, threads: int | None = None) -> Any:
    """The model of any artefact: a task's (``load_compressed``), or a pretrained causal LM's."""
    from lmforge.compress.artifact import artifact_format, load_compressed
    from lmforge.compress.lm import is_causal_lm, load_lm

    if is_causal_lm(artifact_format(path)):
        return load_lm(path)
    return load_compressed(path, threads=threads)[0]


def _child(path: str, batches: dict, repeats: int, threads: int, conn: Any) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        model = load_model(Path(path), threads)
        result = latency(model, batches, repeats)
        result["load_seconds"] = time.perf_counter() - t0
        result["peak_rss_mb"] = peak_rss_mb()
        conn.send(result)
    except Exception as e:  # reported to the parent, which raises it
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def profile(path: Path, batches: dict[int, dict[str, Any]], repeats: int) -> dict[str, float]:
    """Latency and peak RSS of the artefact at ``path``, loaded in a fresh process with the
    same thread count as this one (torch and ONNX Runtime alike, for a fair comparison).

    Raises:
        LmforgeError: the child failed or died.
    """
    import torch

    from lmforge.evaluate.profile import in_fresh_process

    return in_fresh_process(
        _child,
        (str(path), batches, repeats, torch.get_num_threads()),
        what=f"compress: profiling {path}",
        skip="set compress.profile: false to skip profiling",
    )


def input_batches(path: Path, docs: list[Any], fcfg: Any, sizes: list[int]) -> dict[int, dict]:
    """Real test inputs at each batch size (cycled when the test set is smaller): model
    inputs only (input_ids, attention_mask), the same tensors for every artefact."""
    from lmforge.compress.artifact import load_compressed

    _, processor, task, info = load_compressed(path)
    enc = task.encode(processor, docs, info, fcfg, "test")
    out = {}
    for size in sizes:
        batch = enc.batch([i % len(enc) for i in range(size)])
        out[size] = {k: batch[k] for k in ("input_ids", "attention_mask")}
    return out


# quality metrics where a smaller number is the better model
LOWER_IS_BETTER = frozenset({"perplexity", "loss"})


def better_quality(point: dict[str, Any]) -> float:
    """The point's quality oriented so that larger is better (perplexity negated)."""
    q = point["quality"]
    return -q if point.get("quality_metric") in LOWER_IS_BETTER else q


def pareto_front(points: list[dict[str, Any]]) -> list[str]:
    """Names of the points no other point beats on quality, batch-1 latency and size at once
    (quality in its own direction: higher accuracy, lower perplexity)."""
    key = "latency_ms_p50_b1"

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        pairs = [(better_quality(a), better_quality(b)), (-a["size_mb"], -b["size_mb"])]
        if key in a and key in b:
            pairs.append((-a[key], -b[key]))
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return [p["name"] for p in points if not any(dominates(q, p) for q in points if q is not p)]


def plot_tradeoff(points: list[dict[str, Any]], path: Path, title: str) -> None:
    """Quality vs batch-1 latency, marker area proportional to size on disk."""
    from lmforge.core.plots import figure

    key = (
        "latency_ms_p50_b1" if all("latency_ms_p50_b1" in p for p in points) else "predict_seconds"
    )
    with figure(path, (6.4, 4.4)) as (_, ax):
        biggest = max(p["size_mb"] for p in points) or 1.0
        for i, p in enumerate(sorted(points, key=lambda p: p[key])):
            ax.scatter(p[key], p["quality"], s=40 + 600 * p["size_mb"] / biggest, alpha=0.6)
            # labels alternate above and below, in latency order: neighbours stay readable
            offset = (0, 10) if i % 2 == 0 else (0, -16)
            ax.annotate(
                p["name"],
                (p[key], p["quality"]),
                xytext=offset,
                textcoords="offset points",
                fontsize=8,
                ha="center",
            )
        ax.set_xlabel(
            "latency p50 at batch 1 (ms)" if key != "predict_seconds" else "predict seconds"
        )
        metric = points[0]["quality_metric"]
        lower = " (lower is better)" if metric in LOWER_IS_BETTER else ""
        ax.set_ylabel(f"{metric}{lower}")
        ax.set_title(f"{title} (marker area: size on disk)")
        ax.grid(alpha=0.3)
