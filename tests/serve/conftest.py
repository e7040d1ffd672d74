"""Tiny saved models with their manifests, and real servers on free loopback ports.

Each server is ``python -m lmforge serve DIR --port P`` in a child process, as a user starts
it, so tests see what a client sees (and can kill -9 or SIGTERM it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import tiny_bert, tiny_llama_dir, trained_tokenizer

from lmforge.core.manifest import Manifest, write_manifest

LABELS = ["business", "sport", "tech"]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
KEY = "s3cret-key-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running ``lmforge serve`` child: its URL, process and log file."""

    def __init__(self, target: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = target.parent / f"serve-{self.port}.log"
        cmd = [sys.executable, "-m", "lmforge", "serve", str(target), "--port", str(self.port)]
        environ = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [*cmd, *args], stdout=out, stderr=subprocess.STDOUT, env=environ
            )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _tokenizer(path: Path, texts: list[str]) -> None:
    trained_tokenizer(texts, vocab_size=500, max_length=64).save_pretrained(path)


def save_classifier(path: Path, texts: list[str]) -> Path:
    """A 1-layer BERT topic classifier with the manifest finetune would write."""
    _tokenizer(path, texts)
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {x: i for i, x in enumerate(LABELS)}}
    tiny_bert(vocab_size=500, num_hidden_layers=1, num_labels=3, **labels).save_pretrained(path)
    write_manifest(
        path,
        Manifest(
            kind="full",
            task="classification",
            info={"labels": LABELS, "multi_label": False},
            max_length=64,
        ),
    )
    return path


def save_tagger(path: Path, texts: list[str]) -> Path:
    from transformers import BertForTokenClassification

    _tokenizer(path, texts)
    labels = {"id2label": dict(enumerate(TAGS)), "label2id": {x: i for i, x in enumerate(TAGS)}}
    tiny_bert(BertForTokenClassification, vocab_size=500, num_labels=5, **labels).save_pretrained(
        path
    )
    write_manifest(
        path,
        Manifest(kind="full", task="token-classification", info={"labels": TAGS}, max_length=64),
    )
    return path


def save_reader(path: Path, texts: list[str]) -> Path:
    from transformers import BertForQuestionAnswering

    _tokenizer(path, texts)
    tiny_bert(BertForQuestionAnswering, vocab_size=500).save_pretrained(path)
    write_manifest(
        path,
        Manifest(
            kind="full",
            task="extractive-qa",
            info={"n_best": 20, "max_answer_tokens": 30},
            max_length=64,
        ),
    )
    return path


def save_llama(path: Path, texts: list[str]) -> Path:
    """No manifest: served as a causal LM; room for generations long enough to cut short."""
    return tiny_llama_dir(path, texts, context=4096)


@pytest.fixture(scope="session")
def texts(en_texts: list[str]) -> list[str]:
    return [t[:2000] for t in en_texts[:120]]


@pytest.fixture(scope="session")
def classifier(tmp_path_factory, texts) -> Path:
    return save_classifier(tmp_path_factory.mktemp("models") / "topics", texts)


@pytest.fixture(scope="session")
def llama(tmp_path_factory, texts) -> Path:
    return save_llama(tmp_path_factory.mktemp("models") / "tiny-llama", texts)


@pytest.fixture(scope="module")
def cls_server(classifier):
    served = Served(classifier, "--api-key-env", "LMFORGE_TEST_KEY", "--log-inputs",
                    env={"LMFORGE_TEST_KEY": KEY})  # fmt: skip
    yield served
    served.stop()


@pytest.fixture(scope="module")
def llm_server(llama):
    served = Served(llama, "--max-tokens", "3000", "--max-batch-size", "1")
    yield served
    served.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}
