"""Serving side by side: lmforge with dynamic batching, without, and a plain pipeline handler.

Three servers, one at a time, on 127.0.0.1 (loopback only), each in its own process with one
torch thread (``OMP_NUM_THREADS=1``) so they compete for the same single core:

    (a) ``lmforge serve`` with batching (``--max-batch-size 32 --max-wait-ms 5``)
    (b) ``lmforge serve --max-batch-size 1`` (batching off: one forward pass per request)
    (c) a minimal FastAPI app around ``transformers.pipeline`` (``text-classification`` and
        ``text-generation``), the handler people write first (``PLAIN_APP`` below)

Each is driven by 16 concurrent clients (asyncio + httpx), for classification (one text per
request: ``--chars`` characters of a BBC article, 120 by default - a sentence, as intent or
sentiment requests are; at most 128 tokens) and generation (32 new tokens, greedy). Reported:
requests/s over the whole burst, p50/p95/p99 latency, and the server process's CPU time per
request (user + system, from /proc: what a request costs whatever else loads the machine).
Models are random-weight BERT (4 x 256)
and Llama (4 x 256) built here with a BPE/WordPiece tokenizer trained on BBC News - throughput
depends on the shapes, not the weights. Bounded: ``--requests`` per route and ``--max-seconds``
per burst (a burst that hits the limit reports what finished).

    python benchmarks/serve.py [--requests 256] [--gen-requests 48] [--clients 16]
        [--chars 120] [--max-seconds 120] [--quick] [--only classify|generate]
        [--precision fp32[,bf16]] [--out results.json]

``--precision fp32,bf16`` runs (a) and (b) once per precision (``lmforge serve --precision``);
the ratios compare each lmforge row with batching at its own precision, the pipeline with the
first precision's batching row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PLAIN_APP = """
import sys, torch
from fastapi import FastAPI
from transformers import pipeline
torch.set_num_threads(1)
kind, path = sys.argv[1], sys.argv[2]
task = "text-classification" if kind == "classify" else "text-generation"
pipe = pipeline(task, model=path, device="cpu")
app = FastAPI()

@app.get("/health")
def health():
    return {"status": "ok"}

@app.post("/v1/classify")
def classify(body: dict):
    return {"results": pipe(body["texts"], truncation=True, max_length=128)}

@app.post("/v1/completions")
def completions(body: dict):
    out = pipe(body["prompt"], max_new_tokens=body["max_tokens"], do_sample=False,
               return_full_text=False)
    return {"choices": [{"text": out[0]["generated_text"]}]}

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_models(root: Path, texts: list[str]) -> tuple[Path, Path]:
    """A BERT topic classifier and a Llama, random weights, with tokenizers trained on texts."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from lmforge.core.manifest import Manifest, write_manifest
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import to_transformers, train_tokenizer

    torch.manual_seed(0)
    labels = ["business", "entertainment", "politics", "sport", "tech"]
    cls = root / "classifier"
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=8000, model_max_length=512)
    to_transformers(train_tokenizer(cfg, texts), cfg).save_pretrained(cls)
    BertForSequenceClassification(
        BertConfig(
            vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=1024, num_labels=5, id2label=dict(enumerate(labels)),
            label2id={x: i for i, x in enumerate(labels)},
        )
    ).save_pretrained(cls)  # fmt: skip
    info = {"labels": labels, "multi_label": False}
    write_manifest(cls, Manifest(kind="full", task="classification", info=info, max_length=128))
    gen = root / "generator"
    cfg = TokenizerConfig(kind="bpe", vocab_size=8000, model_max_length=512)
    to_transformers(train_tokenizer(cfg, texts), cfg).save_pretrained(gen)
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=8000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        )
    ).save_pretrained(gen)  # fmt: skip
    return cls, gen


class Server:
    def __init__(self, cmd: list[str], port: int, log: Path) -> None:
        import httpx

        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.url = f"http://127.0.0.1:{port}"
        with log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(log.read_text())
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"server did not start: {log.read_text()}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux /proc), else None."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def burst(url: str, bodies: list[dict], path: str, clients: int, limit: float) -> dict:
    """Send ``bodies`` from ``clients`` concurrent clients; latencies and requests/s."""
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty() and time.perf_counter() - start < limit:
            body = queue.get_nowait()
            t0 = time.perf_counter()
            r = await http.post(url + path, json=body)
            if r.status_code != 200:
                errors += 1
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await http.post(url + path, json=bodies[0])  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "rps": round(len(latencies) / wall, 2),
        "p50_ms": round(q[49] * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=256, help="classification requests")
    ap.add_argument("--gen-requests", type=int, default=48, help="generation requests")
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--chars", type=int, default=120, help="characters per text to classify")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=120, help="per burst")
    ap.add_argument("--quick", action="store_true", help="64 / 16 requests")
    ap.add_argument("--only", choices=["classify", "generate"], help="one route only")
    ap.add_argument(
        "--precision", default="fp32", help="lmforge serve --precision, comma-separated: each "
        "gets a batching and a no-batching server (e.g. fp32,bf16)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    first = args.precision.split(",")[0]
    if args.quick:
        args.requests, args.gen_requests = 64, 16

    from lmforge.data.builtin import load_builtin

    docs = load_builtin("bbc-news", limit=400)
    texts = [d.text for d in docs]
    work = Path(tempfile.mkdtemp(prefix="lmforge-bench-serve-"))
    cls, gen = build_models(work, texts)
    (work / "plain.py").write_text(PLAIN_APP)
    cls_bodies = [{"texts": [texts[i % len(texts)][: args.chars]]} for i in range(args.requests)]
    prompts = [" ".join(t.split()[:12]) for t in texts]
    gen_bodies = [
        {"model": "generator", "prompt": prompts[i % len(prompts)], "max_tokens": args.gen_tokens,
         "temperature": 0}
        for i in range(args.gen_requests)
    ]  # fmt: skip

    def lmforge_cmd(model: Path, port: int, batch: int, precision: str) -> list[str]:
        return [sys.executable, "-m", "lmforge", "serve", str(model), "--port", str(port),
                "--max-batch-size", str(batch), "--max-wait-ms", "5", "--timeout", "600",
                "--precision", precision]  # fmt: skip

    def plain_cmd(kind: str, model: Path, port: int) -> list[str]:
        return [sys.executable, str(work / "plain.py"), kind, str(model), str(port)]

    def lmforge(batch: int, precision: str) -> Callable[[str, Path, int], list[str]]:
        return lambda kind, model, port: lmforge_cmd(model, port, batch, precision)

    setups: dict[str, Callable[[str, Path, int], list[str]]] = {}
    for p in args.precision.split(","):
        setups[f"lmforge, batching, {p}"] = lmforge(32, p)
        setups[f"lmforge, no batching, {p}"] = lmforge(1, p)
    setups["transformers.pipeline handler"] = plain_cmd
    results: dict[str, dict] = {}
    for kind, model, path, bodies in (
        ("classify", cls, "/v1/classify", cls_bodies),
        ("generate", gen, "/v1/completions", gen_bodies),
    ):
        if args.only not in (None, kind):
            continue
        for name, cmd in setups.items():
            port = free_port()
            server = Server(cmd(kind, model, port), port, work / f"{kind}-{port}.log")
            try:
                cpu0 = server.cpu_seconds()
                r = asyncio.run(burst(server.url, bodies, path, args.clients, args.max_seconds))
                cpu1 = server.cpu_seconds()
            finally:
                server.stop()
            if cpu0 is not None and cpu1 is not None:  # the warm-up request included
                r["cpu_ms_per_request"] = round((cpu1 - cpu0) * 1000 / (r["requests"] + 1), 2)
            results.setdefault(kind, {})[name] = r
            print(f"{kind:<9} {name:<31} {json.dumps(r)}", flush=True)
    for rows in results.values():
        for name, r in rows.items():  # against batching at the same precision (the pipeline:
            p = name.rsplit(", ", 1)[-1] if name.startswith("lmforge") else first  # at the first)
            base = rows[f"lmforge, batching, {p}"]
            r["batching_speedup"] = round(base["rps"] / r["rps"], 2) if r["rps"] else None
            cpu, base_cpu = r.get("cpu_ms_per_request"), base.get("cpu_ms_per_request")
            r["batching_cpu_saving"] = round(cpu / base_cpu, 2) if cpu and base_cpu else None
    print("\n| route | server | req/s | p50 ms | p95 ms | p99 ms | CPU ms/request | "
          "batching is x faster | x less CPU |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, rows in results.items():
        for name, r in rows.items():
            print(f"| {kind} | {name} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | "
                  f"{r['p99_ms']} | {r.get('cpu_ms_per_request', '-')} | "
                  f"{r['batching_speedup']} | {r['batching_cpu_saving'] or '-'} |")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
