"""Image classification on real sklearn digits: encode, processor reload, training, LoRA, data."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    BertConfig,
    BertForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

from lmforge.core.errors import DataError, LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.data.config import SourceConfig
from lmforge.data.document import Document
from lmforge.data.sources import LoadStats, load_source
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.methods import MethodConfig, apply_method, trainable_parameters
from lmforge.finetune.train import fit
from lmforge.tasks import TASKS
from lmforge.tasks.image_classification import image_collate

TASK = TASKS.get("image-classification")
CFG = FinetuneConfig(task="image-classification", model={"preset": "vit-tiny"}, batch_size=32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    docs = load_builtin("digits", limit=500)
    return {"train": docs[:400], "val": [], "test": docs[400:]}


def tiny_vit_dir(path, info, seed=0):
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(info.labels),
        id2label=dict(enumerate(info.labels)),
        label2id={n: i for i, n in enumerate(info.labels)},
    )
    ViTForImageClassification(config).save_pretrained(path)
    return path


def test_encode_shapes_value_range_and_train_only_shifts(digits):
    info = TASK.prepare(digits)
    assert (info.channels, info.value_max, info.labels) == (1, 16.0, [str(i) for i in range(10)])
    _, processor = TASK.from_preset("vit-tiny", info, None)
    train = TASK.encode(processor, digits["train"], info, CFG, "train")
    test = TASK.encode(processor, digits["test"], info, CFG, "test")
    assert len(train) == 400 and test.references == [d.label for d in digits["test"]]
    x = test.batch(list(range(32)))["pixel_values"]
    assert x.shape == (32, 1, 32, 32) and x.dtype == torch.float32
    # 0 (background) -> -1 and 16 (ink) -> +1 after rescale by 1/16 and normalise by 0.5
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert torch.equal(x, test.batch(list(range(32)))["pixel_values"])  # no augmentation
    torch.manual_seed(0)
    shifted = train.batch(list(range(32)))
    assert shifted["pixel_values"].shape == (32, 1, 32, 32)
    assert shifted["labels"].tolist() == [int(d.label) for d in digits["train"][:32]]
    plain = image_collate(False)([train.features[i] for i in range(32)])["pixel_values"]
    assert not torch.equal(shifted["pixel_values"], plain)


def test_preset_processor_reloads_with_plain_auto_image_processor(digits, tmp_path):
    info = TASK.prepare(digits)
    model, processor = TASK.from_preset("vit-tiny", info, None)
    processor.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "ViTImageProcessor"
    assert saved["rescale_factor"] == 1 / 16 and saved["size"] == {"height": 32, "width": 32}
    images = [np.array(d.image, dtype=np.uint8)[:, :, None] for d in digits["test"][:8]]
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)  # no lmforge involved
    x = reloaded(images, return_tensors="pt")["pixel_values"]
    ours = TASK.encode(processor, digits["test"][:8], info, CFG, "test").batch(list(range(8)))
    assert torch.allclose(x, ours["pixel_values"])
    plain = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert plain.config.id2label[3] == "3" and plain(pixel_values=x).logits.shape == (8, 10)


def test_vit_tiny_learns_digits_from_scratch(digits):
    info = TASK.prepare(digits)
    torch.manual_seed(0)
    model, processor = TASK.from_preset("vit-tiny", info, None)
    train = TASK.encode(processor, digits["train"], info, CFG, "train")
    test = TASK.encode(processor, digits["test"], info, CFG, "test")
    history = fit(model, train, None, epochs=15, lr=3e-3, batch_size=32)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    scores = TASK.metrics(test.references, TASK.predict(model, test, processor, info, CFG), info)
    assert scores["accuracy"] > 0.3, scores  # chance is 0.1
    assert len(scores["confusion_matrix"]) == 10 and set(scores["per_class"]) == set(info.labels)


def test_svm_baseline_on_raw_pixels(digits):
    info = TASK.prepare(digits)
    base = TASK.baseline(digits, info)
    assert base["method"] == "rbf-svm on raw pixels" and base["accuracy"] > 0.85, base


def test_lora_on_vit_reloads_with_peft_and_the_same_logits(digits, tmp_path):
    from peft import PeftModel

    info = TASK.prepare(digits)
    base = tiny_vit_dir(tmp_path / "base", info)
    model = apply_method("lora", TASK.load_model(base, info), MethodConfig(r=4), "IMAGE_CLS", 10)
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < 0.25 * total
    adapted = {n.split(".")[-4] for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "v_proj"}
    _, processor = TASK.from_preset("vit-tiny", info, None)
    train = TASK.encode(processor, digits["train"][:64], info, CFG, "train")
    fit(model, train, None, epochs=1, lr=1e-2, batch_size=32)
    model.eval().save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(
        AutoModelForImageClassification.from_pretrained(base), tmp_path / "adapter"
    ).eval()
    x = TASK.encode(processor, digits["test"][:8], info, CFG, "test").batch(list(range(8)))
    with torch.no_grad():
        expected = model(pixel_values=x["pixel_values"]).logits
        assert torch.allclose(expected, reloaded(pixel_values=x["pixel_values"]).logits, atol=1e-6)
        merged = model.merge_and_unload()
        assert type(merged) is ViTForImageClassification
        assert (merged(pixel_values=x["pixel_values"]).logits - expected).abs().max() < 1e-5


@pytest.mark.parametrize("method", ["adalora", "ia3", "linear-probe"])
def test_other_methods_apply_to_vit(method, digits, tmp_path):
    info = TASK.prepare(digits)
    model = TASK.load_model(tiny_vit_dir(tmp_path, info), info)
    model = apply_method(method, model, MethodConfig(r=4), "IMAGE_CLS", 10)
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < 0.5 * total
    x = torch.zeros(2, 1, 32, 32)
    loss = model(pixel_values=x, labels=torch.tensor([0, 1])).loss
    loss.backward()


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_prefix_and_prompt_tuning_are_a_clear_error_on_vit(method, digits, tmp_path):
    info = TASK.prepare(digits)
    model = TASK.load_model(tiny_vit_dir(tmp_path, info), info)
    with pytest.raises(LmforgeError, match="cannot apply it to an image model"):
        apply_method(method, model, MethodConfig(), "IMAGE_CLS", 10)


def test_a_text_model_is_rejected(digits, tmp_path):
    info = TASK.prepare(digits)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(LmforgeError, match="no image processor.*vit-tiny"):
        TASK.load_processor(tmp_path)
    with pytest.raises(LmforgeError, match="BertConfig has no ImageClassification head.*vit-tiny"):
        TASK.load_model(tmp_path, info)


def test_rows_without_images_or_with_bad_pixels_are_named(digits):
    bad = {**digits, "test": [*digits["test"][:3], Document("photo.png", label="1")]}
    with pytest.raises(DataError, match=r"1 'test' rows have no image.*rows \[3\].*photo.png"):
        TASK.prepare(bad)
    negative = Document("", label="1", image=[[0, -2], [3, 4]])
    with pytest.raises(DataError, match=r"'train' row 1 has pixel values in \[-2, 4\]"):
        TASK.prepare({"train": [digits["train"][0], negative], "test": digits["test"]})
    fractional = Document("", label="1", image=[[0, 2.5], [3, 4]])
    with pytest.raises(DataError, match=r"'test' row 0 has pixel values in \[0, 4\]"):
        TASK.prepare({"train": digits["train"], "test": [fractional]})


def test_multi_label_images_are_multi_hot(digits):
    docs = [Document("", label=["a", "b"], image=d.image) for d in digits["train"][:2]]
    docs.append(Document("", label=["c"], image=digits["train"][2].image))
    info = TASK.prepare({"train": docs, "test": docs})
    assert info.multi_label and info.labels == ["a", "b", "c"]
    model, processor = TASK.from_preset("vit-tiny", info, None)
    batch = TASK.encode(processor, docs, info, CFG, "test").batch([0, 2])
    assert batch["labels"].tolist() == [[1, 1, 0], [0, 0, 1]]
    assert model.config.problem_type == "multi_label_classification"
    assert model(**batch).loss.item() > 0


def png(path, pixels, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode=mode).save(path)


def test_images_from_files_pixel_lists_and_image_folders(digits, tmp_path):
    real = digits["train"][:6]
    as_8bit = [(np.array(d.image) * 255 // 16).tolist() for d in real]
    # a CSV naming PNG files relative to itself, one path missing
    rows = ["file,digit"]
    for i, (d, pixels) in enumerate(zip(real[:3], as_8bit, strict=False)):
        png(tmp_path / "csv" / "img" / f"{i}.png", pixels)
        rows.append(f"img/{i}.png,{d.label}")
    rows.append("img/missing.png,1")
    (tmp_path / "csv" / "digits.csv").write_text("\n".join(rows) + "\n")
    src = SourceConfig(
        path=tmp_path / "csv" / "digits.csv", text_column="file", label_column="digit"
    )
    docs = load_source(src, LoadStats())
    assert [d.image for d in docs[:3]] == as_8bit[:3] and docs[3].image is None
    assert docs[0].text == "img/0.png" and docs[0].label == real[0].label
    # JSONL with pixel rows in the text column
    jsonl = tmp_path / "px.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d.image, "label": d.label}) + "\n" for d in real))
    docs = load_source(SourceConfig(path=jsonl, label_column="label"), LoadStats())
    assert [d.image for d in docs] == [d.image for d in real] and docs[0].tokens is None
    # an image folder: <dir>/<class>/*.png; one colour image turns the source RGB
    for i, (d, pixels) in enumerate(zip(real, as_8bit, strict=True)):
        png(tmp_path / "folder" / d.label / f"{i}.png", pixels)
    png(tmp_path / "folder" / real[0].label / "colour.png", [[[255, 0, 0]] * 8] * 8, "RGB")
    stats = LoadStats()
    docs = load_source(SourceConfig(path=tmp_path / "folder"), stats)
    assert stats.documents == 7 and {d.label for d in docs} == {d.label for d in real}
    assert all(np.asarray(d.image).shape == (8, 8, 3) for d in docs)
    first = docs[0]  # classes take turns: the first image of the first class
    assert first.text == f"{first.label}/{first.meta['id'].split('/')[-1]}"
    info = TASK.prepare({"train": docs, "test": docs})
    assert (info.channels, info.value_max) == (3, 255.0)
    _, processor = TASK.from_preset("vit-tiny", info, None)
    x = TASK.encode(processor, docs, info, CFG, "test").batch([0, 1])["pixel_values"]
    assert x.shape == (2, 3, 32, 32)
