"""What serving a model costs: parameters, size on disk, forward latency, peak memory.

Latency and peak RSS are measured in a fresh ``spawn`` process that loads the model from disk
as a server would, so the numbers do not include the training run's memory or warm caches.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError


def dir_megabytes(path: Path) -> float:
    """Size of the files under ``path`` in MB (10**6 bytes)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


def adapter_base(path: Path) -> Path | None:
    """The base model directory of a peft adapter directory; None for a plain model."""
    config = Path(path) / "adapter_config.json"
    if not config.exists():
        return None
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").exists():
        raise LmforgeError(
            f"{path} is a peft adapter whose base model {base!r} is not a local directory; "
            "evaluate the merged model instead (finetune.merge: true)"
        )
    return Path(base)


def load_for_eval(
    task: Any, path: Path, info: Any, *, trust_remote_code: bool = False
) -> tuple[Any, Any, int]:
    """(model in eval mode, processor, trainable-parameter count) from a model or adapter dir.

    A model directory must hold every weight its task head needs: one without (a masked-LM or
    bare encoder scored as a classifier) is refused rather than scored with a random head.
    An adapter loads onto its base model with the task head, in plain peft (the adapter
    carries the head it trained); the trainable count is then the adapter's (the parameters
    fine-tuning changed). ``trust_remote_code`` runs the directory's own modeling code: only
    ever the user's explicit choice (``--trust-remote-code``)."""
    base = adapter_base(path)
    if base is None:
        model = task.load_model(
            path, info, trust_remote_code=trust_remote_code, for_inference=True
        )
        processor = task.load_processor(path)
        trainable = sum(p.numel() for p in model.parameters())
    else:
        from peft import PeftModel

        body = task.load_model(base, info, trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(body, path, is_trainable=True)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        processor = task.load_processor(path if (path / "tokenizer_config.json").exists() else base)
    model.eval()
    return model, processor, trainable


def forward_latency(
    model: Any, make_batch: Callable[[int], dict[str, Any]], sizes: list[int], repeats: int
) -> dict[str, float]:
    """Median forward-pass milliseconds per batch size, and examples/s at each size."""
    import torch

    out: dict[str, float] = {}
    for size in sizes:
        batch = make_batch(size)
        times = []
        with torch.inference_mode():
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                model(**batch)
                if i:  # the first call warms up allocators and kernels
                    times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        n = len(next(iter(batch.values())))
        out[f"latency_ms_b{size}"] = median * 1000
        out[f"examples_per_s_b{size}"] = n / median
    return out


def _profile_child(task_name: str, path: str, info: Any, batches: dict, repeats: int, q) -> None:  # noqa: ANN001
    import resource

    import torch

    from lmforge.tasks import TASKS

    torch.set_num_threads(torch.get_num_threads())
    try:
        t0 = time.perf_counter()
        model, _, _ = load_for_eval(TASKS.get(task_name), Path(path), info)
        load_s = time.perf_counter() - t0
        result = forward_latency(model, lambda b: batches[b], sorted(batches), repeats)
        result["load_seconds"] = load_s
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        q.put(result)
    except Exception as e:  # reported to the parent, which raises it
        q.put({"error": f"{type(e).__name__}: {e}"})


def profile_in_fresh_process(
    task_name: str, path: Path, info: Any, batches: dict[int, dict[str, Any]], repeats: int
) -> dict[str, float]:
    """Load the model in a new process, time forward passes on ``batches``, report peak RSS."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(
        target=_profile_child, args=(task_name, str(path), info, batches, repeats, q)
    )
    proc.start()
    result = q.get(timeout=1800)
    proc.join()
    if "error" in result:
        raise LmforgeError(f"evaluate: profiling {path} failed: {result['error']}")
    return result
