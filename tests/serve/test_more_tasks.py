"""Translation and image routes, and which artefact a run directory serves."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from conftest import Served, save_classifier
from helpers import trained_tokenizer

from lmforge.core.errors import LmforgeError
from lmforge.core.manifest import Manifest, write_manifest
from lmforge.serve.loader import pick_artifact
from lmforge.tasks import TASKS


@pytest.fixture(scope="module", params=["t5-tiny", "bert2gpt-mini"])
def translator(request, tmp_path_factory, texts):
    """Both translation presets: T5, and bert2gpt (a transformers EncoderDecoderModel)."""
    from lmforge.tasks.translation import PairInfo

    tok_dir = tmp_path_factory.mktemp("tok")
    trained_tokenizer(texts, "bpe", 600, 64).save_pretrained(tok_dir)
    model, tok = TASKS.get("translation").from_preset(request.param, PairInfo("en"), tok_dir)
    path = tmp_path_factory.mktemp("models") / "translator"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    write_manifest(path, Manifest(kind="full", task="translation",
                                  info={"target_language": "en"}, max_length=64))  # fmt: skip
    served = Served(path)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def vision(tmp_path_factory):
    from lmforge.tasks.image_classification import ImageInfo

    info = ImageInfo(["dark", "light"], channels=1, value_max=255.0)
    model, processor = TASKS.get("image-classification").from_preset("vit-tiny", info, None)
    path = tmp_path_factory.mktemp("models") / "vision"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    write_manifest(path, Manifest(kind="full", task="image-classification", info={
        "labels": ["dark", "light"], "multi_label": False, "channels": 1, "value_max": 255.0}))  # fmt: skip
    served = Served(path)
    yield served
    served.stop()


def test_translate_route_returns_one_translation_per_text(translator):
    r = httpx.post(
        translator.url + "/v1/translate",
        json={"texts": ["The bank raised rates.", "Hello"], "max_tokens": 5},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and all(isinstance(x["translation"], str) for x in results)
    r = httpx.post(translator.url + "/v1/translate", json={"texts": ["a"], "max_tokens": 10**6})
    assert r.status_code == 422 and "--max-tokens" in r.json()["error"]["message"]


def test_image_route_takes_pixel_rows_and_png_files(vision):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (20, 12), (250, 250, 250)).save(buf, "PNG")
    png = base64.b64encode(buf.getvalue()).decode()
    grey = [[0, 16, 255, 3]] * 4
    r = httpx.post(vision.url + "/v1/images/classify", json={"images": [grey, png]}, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [set(x["scores"]) for x in results] == [{"dark", "light"}] * 2
    for bad in (["not base64!"], [[[1, 2], [3]]], [[[300]]], [[]]):
        r = httpx.post(vision.url + "/v1/images/classify", json={"images": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["param"].startswith("images")


def test_a_run_directory_serves_merged_then_model_then_pretrain(tmp_path, texts):
    run = tmp_path / "run"
    (run / "finetune").mkdir(parents=True)
    with pytest.raises(LmforgeError, match="finetune/merged, finetune/model, pretrain/model"):
        pick_artifact(run)
    save_classifier(run / "finetune" / "model", texts)
    path, why = pick_artifact(run)
    assert path == run / "finetune" / "model" and "no finetune/merged" in why
    save_classifier(run / "finetune" / "merged", texts)
    assert pick_artifact(run)[0] == run / "finetune" / "merged"
    served = Served(run)
    try:
        assert httpx.get(served.url + "/v1/models").json()["data"][0]["id"] == "run"
        assert "serving finetune/merged of the run" in served.log.read_text()
    finally:
        served.stop()
    assert json.loads((run / "finetune" / "merged" / "lmforge.json").read_text())["kind"] == "full"
    assert (run / "serve" / "feedback.sqlite").is_file()  # the store lives in the run


def test_an_onnx_artefact_of_the_compress_stage_is_served_with_onnxruntime(classifier, tmp_path):
    from lmforge.compress.artifact import artifact_format, save_compressed
    from lmforge.compress.export import export_onnx
    from lmforge.tasks.artifact import load_artifact

    dest = tmp_path / "onnx"
    export_onnx(load_artifact(classifier).model, dest, 18)
    save_compressed(dest, artifact_format(classifier), "onnx", "compress/onnx")
    load_artifact(classifier).processor.save_pretrained(dest)
    served = Served(dest)
    try:
        r = httpx.post(served.url + "/v1/classify", json={"texts": ["Shares fell"]}, timeout=60)
        assert r.status_code == 200, r.text
        assert sum(r.json()["results"][0]["scores"].values()) == pytest.approx(1, abs=1e-4)
        assert "(onnx)" in served.log.read_text()
        r = httpx.post(served.url + "/v1/embeddings", json={"model": "onnx", "input": "x"})
        assert r.status_code == 400 and "hidden states" in r.json()["error"]["message"]
    finally:
        served.stop()
