"""A BERT-CRF tagger keeps its CRF through every compress format: each artefact carries
crf.safetensors and decodes with Viterbi, so its tags are the source model's tags."""

import pytest
from helpers import CRF_LABELS, random_crf_model, trained_tokenizer

from lmforge.compress.artifact import artifact_format, load_compressed
from lmforge.compress.config import CompressConfig
from lmforge.compress.methods import StepRun, load_methods
from lmforge.core.manifest import Manifest, write_manifest
from lmforge.data.builtin import load_builtin
from lmforge.finetune.config import FinetuneConfig
from lmforge.tasks import TASKS
from lmforge.tasks.crf import CRF_FILE, CrfTagger

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def daily():
    return load_builtin("peoples-daily-ner", limit=300)


STEPS = {  # int8 ONNX quantizes the exported graph: the file must travel along the chain
    "onnx": {"method": "export", "format": "onnx"},
    "onnx-int8": {"method": "quantize", "scheme": "int8-dynamic"},
    "torch-int8": {"method": "quantize", "scheme": "int8-dynamic", "engine": "torch"},
    "fp16": {"method": "quantize", "scheme": "fp16"},
    "int8-weight": {"method": "quantize", "scheme": "int8-weight"},
}
CHAINS = [["onnx", "onnx-int8"], ["torch-int8"], ["fp16"], ["int8-weight"]]


@pytest.fixture(scope="module")
def crf_dir(daily, tmp_path_factory):
    path = tmp_path_factory.mktemp("crf")
    tokenizer = trained_tokenizer([d.text for d in daily], vocab_size=1500, max_length=128)
    random_crf_model(tokenizer, path)
    info = {"labels": CRF_LABELS}
    write_manifest(path, Manifest(kind="full", task="token-classification", info=info))
    return path


def predict(model, processor, info, docs):
    task = TASKS.get("token-classification")
    opts = FinetuneConfig(task="token-classification", max_length=128)
    return task.predict(model, task.encode(processor, docs, info, opts, "test"), None, info, opts)


def agreement(tags, reference):
    pairs = [
        (a, b) for x, y in zip(tags, reference, strict=True) for a, b in zip(x, y, strict=True)
    ]
    return sum(a == b for a, b in pairs) / len(pairs)


@pytest.mark.parametrize("chain", CHAINS, ids="+".join)
def test_every_format_keeps_the_crf(crf_dir, daily, tmp_path, chain):
    docs = [d for d in daily if 10 < len(d.tokens) < 100][:6]
    source, processor, _, info = load_compressed(crf_dir)
    assert isinstance(source, CrfTagger)
    expected = predict(source, processor, info, docs)
    art = artifact_format(crf_dir)
    for i, name in enumerate(chain):
        step = CompressConfig(steps=[STEPS[name]]).steps[0]
        (tmp_path / name).mkdir()
        run = StepRun(step, i, art, tmp_path / name, f"compress/{name}", None, None)
        art, _ = load_methods().get(step.method).run(run)
        assert (art.path / CRF_FILE).is_file(), name
        model, processor, _, info = load_compressed(art.path)
        assert isinstance(model, CrfTagger), name
        # quantization moves the emissions a little, the Viterbi path hardly; per-token argmax
        # over the same emissions (the CRF dropped, as before the fix) tags far more differently
        assert agreement(predict(model, processor, info, docs), expected) >= 0.95, name
        assert agreement(predict(model.emitter, processor, info, docs), expected) < 0.9, name
