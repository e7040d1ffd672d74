"""What serving a model costs: parameters, size on disk, forward latency, peak memory.

Latency and peak RSS are measured in a fresh ``spawn`` process that loads the model from disk
as a server would, so the numbers do not include the training run's memory or warm caches.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import LmforgeError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


def dir_megabytes(path: Path) -> float:
    """Size of the files under ``path`` in MB (10**6 bytes)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


def adapter_base(path: Path) -> Path | None:
    """The base model directory of a peft adapter directory (from its lmforge.json, else peft's
    adapter_config.json); None for a plain model."""
    from lmforge.tasks.artifact import inspect_artifact

    return inspect_artifact(path).base


def load_for_eval(
    task: Any, path: Path, info: Any, *, trust_remote_code: bool = False
) -> tuple[Any, Any, int]:
    """(model in eval mode, processor, trainable-parameter count) from a model or adapter dir,
    through ``load_artifact``.

    A model directory must hold every weight its task head needs: one without (a masked-LM or
    bare encoder scored as a classifier) is refused rather than scored with a random head.
    An adapter loads onto its base model with the task head, in plain peft (the adapter
    carries the head it trained); the trainable count is then the adapter's (the parameters
    fine-tuning changed). ``trust_remote_code`` runs the directory's own modeling code: only
    ever the user's explicit choice (``--trust-remote-code``)."""
    from lmforge.tasks.artifact import load_artifact

    art = load_artifact(
        path, task=task.name, info=info, trainable=True, trust_remote_code=trust_remote_code
    )
    params = art.model.parameters()
    trainable = sum(p.numel() for p in params if art.base is None or p.requires_grad)
    return art.model, art.processor, trainable


def forward_seconds(model: Any, batch: dict[str, Any], repeats: int) -> list[float]:
    """Seconds of ``repeats`` forward passes on ``batch``, after one untimed warm-up call."""
    import torch

    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            model(**batch)
            if i:  # the first call warms up allocators and kernels
                times.append(time.perf_counter() - t0)
    return times


def forward_latency(
    model: Any, make_batch: Callable[[int], dict[str, Any]], sizes: list[int], repeats: int
) -> dict[str, float]:
    """Median forward-pass milliseconds per batch size, and examples/s at each size."""
    out: dict[str, float] = {}
    for size in sizes:
        batch = make_batch(size)
        median = statistics.median(forward_seconds(model, batch, repeats))
        n = len(next(iter(batch.values())))
        out[f"latency_ms_b{size}"] = median * 1000
        out[f"examples_per_s_b{size}"] = n / median
    return out


def _profile_child(
    task_name: str,
    path: str,
    info: Any,
    batches: dict,
    repeats: int,
    trust_remote_code: bool,
    conn: Connection,
) -> None:
    import torch

    from lmforge.core.memory import peak_rss_mb
    from lmforge.tasks import TASKS

    torch.set_num_threads(torch.get_num_threads())
    try:
        t0 = time.perf_counter()
        task = TASKS.get(task_name)
        model, _, _ = load_for_eval(task, Path(path), info, trust_remote_code=trust_remote_code)
        load_s = time.perf_counter() - t0
        result = forward_latency(model, lambda b: batches[b], sorted(batches), repeats)
        result["load_seconds"] = load_s
        result["peak_rss_mb"] = peak_rss_mb()  # VmHWM: not the spawning parent's peak
        conn.send(result)
    except Exception as e:  # reported to the parent, which raises it
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


# a child alive but silent this long is stuck, not slow: the bound only for a hang; a child
# that dies is noticed at once
PROFILE_TIMEOUT_S = 1800


def profile_in_fresh_process(
    task_name: str,
    path: Path,
    info: Any,
    batches: dict[int, dict[str, Any]],
    repeats: int,
    *,
    trust_remote_code: bool = False,
) -> dict[str, float]:
    """Load the model in a new process, time forward passes on ``batches``, report peak RSS.

    Raises:
        LmforgeError: the child failed, died (killed for memory, crashed in native code) or
            hung; a dead child is noticed as soon as it exits, not after a timeout.
    """
    args = (task_name, str(path), info, batches, repeats, trust_remote_code)
    return in_fresh_process(
        _profile_child,
        args,
        what=f"evaluate: profiling {path}",
        skip="rerun with evaluate.profile: false (--no-profile) to skip it",
    )


def in_fresh_process(
    target: Callable[..., None], args: tuple, *, what: str, skip: str
) -> dict[str, Any]:
    """The dict ``target(*args, conn)`` sends, run in a spawned process (its peak RSS is its
    own, and a crash or the OOM killer takes the child, not the run).

    Raises:
        LmforgeError: the child sent ``{"error": ...}``, died or hung; ``what`` names the
            work, ``skip`` how to go without it.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    # a pipe, not a queue: once the child exits, its end closes and recv() raises EOFError
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, sender))
    proc.start()
    sender.close()  # the child holds the only writing end now
    try:
        if not receiver.poll(PROFILE_TIMEOUT_S):
            raise LmforgeError(f"{what} gave no result in {PROFILE_TIMEOUT_S} s; {skip}")
        result = receiver.recv()
    except EOFError:
        proc.join(timeout=10)
        raise LmforgeError(
            f"{what}: the process died before reporting ({_exit_reason(proc.exitcode)}); "
            f"{skip}, or free memory"
        ) from None
    finally:
        receiver.close()
        if proc.is_alive():
            proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if "error" in result:
        raise LmforgeError(f"{what} failed: {result['error']}")
    return result


def _exit_reason(exitcode: int | None) -> str:
    """``exit code 3``, ``killed by SIGKILL, as the out-of-memory killer does``, ..."""
    import signal

    if exitcode is None:
        return "still running"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else -exitcode
    hint = ", as the out-of-memory killer does" if -exitcode == signal.SIGKILL else ""
    return f"killed by {name}{hint}"
