"""Image classification with a Vision Transformer (Dosovitskiy et al. 2021).

Head: ``AutoModelForImageClassification``; inputs come from the model's image processor
(``AutoImageProcessor``: resize, rescale to [0, 1], normalise). Labels work as in text
classification (one class, or a list for multi-label) and so do predictions and metrics.

Data: every row needs an image (see ``lmforge.data.images``): the built-in ``digits``, pixel
rows in the text column of a JSONL/Parquet file, an image file's path in the text column
(relative to the data file), or an image folder ``<dir>/<class>/*.png``.

No pretrained ViT installs offline, so the presets train one from scratch, with an image
processor fitted to the data (its value range and channel count) and saved with the model.
A ViT has no convolutional prior: on a thousand images it is data-starved, which is why
training pads and crops at random (below) and why an RBF SVM on raw pixels is trained on the
same split as the baseline to beat.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.data.document import Document
from lmforge.models.presets import VISION_PRESETS
from lmforge.tasks import classification
from lmforge.tasks.base import TASKS, Encoded, Splits, Task
from lmforge.tasks.classification import LabelInfo

# training images are padded (edge pixels repeated) and cropped back at a random offset of up
# to this share of their side. On digits (vit-tiny, 50 epochs) 1/16 - half a source pixel -
# raised val accuracy from 97.6% (no shift) to 98.6%; 1/8 (CIFAR's pad-4-crop-32) cut it to
# 97.1%: a whole pixel of 8 crops strokes off.
SHIFT_FRACTION = 1 / 16
SVM_MAX_FEATURES = 32 * 32 * 3  # larger images are shrunk to 32x32 for the baseline


@dataclass(frozen=True)
class ImageInfo(LabelInfo):
    """Labels plus what the preset processor needs to know about the training images."""

    channels: int = 1  # 1 grey, 3 RGB
    value_max: float = 255.0  # brightest training pixel: 16 for digits, ~255 for 8-bit files


def _rows_without_images(docs: list[Document]) -> list[int]:
    return [i for i, d in enumerate(docs) if d.image is None]


def _check_images(docs: list[Document], split: str) -> None:
    missing = _rows_without_images(docs)
    if missing:
        texts = [docs[i].text[:80] for i in missing[:3]]
        raise DataError(
            f"image-classification: {len(missing)} '{split}' rows have no image, e.g. rows "
            f"{missing[:5]} with text {texts}; the text column must hold pixel rows or an image "
            "file's path relative to the data file (or use an image folder <dir>/<class>/*.png)"
        )


def _pixel_range(docs: list[Document], split: str) -> tuple[int, float]:
    """(channels, brightest value) of ``docs``; values the processor cannot take are an error."""
    import numpy as np

    channels, value_max = 1, 0.0
    for i, d in enumerate(docs):
        pixels = np.asarray(d.image, dtype=np.float64)
        channels = 3 if pixels.ndim == 3 else channels
        top, low = float(pixels.max()), float(pixels.min())
        if low < 0 or top > 255 or (top > 1 and not np.all(pixels == np.round(pixels))):
            raise DataError(
                f"image-classification: '{split}' row {i} has pixel values in [{low:g}, {top:g}]; "
                "use integers 0-255 (any integer scale such as digits' 0-16) or floats in [0, 1]"
            )
        value_max = max(value_max, top)
    return channels, value_max


def prepare(splits: Splits) -> ImageInfo:
    for split in ("train", "val", "test"):
        _check_images(splits.get(split) or [], split)
    labels = LabelInfo.from_documents(splits["train"])
    channels, value_max = _pixel_range(splits["train"], "train")
    info = ImageInfo(labels.labels, labels.multi_label, channels, value_max or 1.0)
    for split in ("val", "test"):
        info.check(splits.get(split) or [], split)
        _pixel_range(splits.get(split) or [], split)
    return info


def _channels_of(processor: Any) -> int:
    mean = getattr(processor, "image_mean", None)
    return len(mean) if isinstance(mean, list | tuple) else 3


def _array(image: list, channels: int) -> Any:
    """(H, W, channels) array; grey -> RGB repeats the value, RGB -> grey is luma (ITU-R 601)."""
    import numpy as np

    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[-1] == channels:
        return a
    if channels == 3:
        return np.repeat(a, 3, axis=-1)
    return (a @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]


def pixel_values(processor: Any, images: list[list], batch: int = 256) -> Any:
    """(N, C, H, W) model inputs from pixel rows, through the model's own processor."""
    import numpy as np
    import torch

    channels = _channels_of(processor)
    out = []
    for start in range(0, len(images), batch):
        arrays = []
        for image in images[start : start + batch]:
            a = _array(image, channels)
            # the PIL backend resizes 8-bit images: integer values go in exact, as uint8
            arrays.append(a.astype(np.uint8) if a.max() > 1 else a)
        enc = processor(arrays, return_tensors="pt", input_data_format="channels_last")
        out.append(enc["pixel_values"])
    return torch.cat(out) if out else torch.zeros(0)


def random_shift(x: Any, fraction: float) -> Any:
    """Pad (N, C, H, W) by repeating edge pixels, then crop at a random offset per image."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    s = max(1, round(min(h, w) * fraction))
    padded = F.pad(x, (s, s, s, s), mode="replicate")
    dy, dx = torch.randint(0, 2 * s + 1, (2, n)).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def image_collate(augment: bool) -> Any:
    import torch

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        x = torch.stack([f["pixel_values"] for f in features])  # (B, C, H, W)
        if augment:
            x = random_shift(x, SHIFT_FRACTION)
        labels = [f["labels"] for f in features]
        dtype = torch.float if isinstance(labels[0], list) else torch.long
        return {"pixel_values": x, "labels": torch.tensor(labels, dtype=dtype)}

    return collate


def encode(
    processor: Any, docs: list[Document], info: ImageInfo, options: Any, split: str
) -> Encoded:
    """Pixel values from the processor; training batches are shifted at random."""
    _check_images(docs, split)
    info.check(docs, split)
    scale = getattr(processor, "rescale_factor", 1 / 255) if processor.do_rescale else 1.0
    if split == "train" and info.value_max * scale < 0.25:
        logger.warning(
            "image-classification: the brightest training pixel (%g) becomes %.3f after the "
            "processor's rescale_factor %g; the images will look nearly black to the model. "
            "Scale the pixels to 0-255 or [0, 1], or train a preset",
            info.value_max,
            info.value_max * scale,
            scale,
        )
    x = pixel_values(processor, [d.image for d in docs])
    targets = info.targets(docs)
    features = [{"pixel_values": row, "labels": y} for row, y in zip(x, targets, strict=True)]
    return Encoded(features, [d.label for d in docs], image_collate(split == "train"))


def load_processor(path: Path) -> Any:
    """The model's image processor (PIL backend: torchvision is not a dependency)."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(path, backend="pil")
    except (OSError, ValueError) as e:
        raise LmforgeError(
            f"finetune.model: {path} has no image processor (preprocessor_config.json), so it "
            "cannot do the 'image-classification' task; give a vision model's directory (a ViT) "
            f"or train one from scratch with model.preset: {' or '.join(VISION_PRESETS)} ({e})"
        ) from None


def load_model(
    path: Path, info: ImageInfo, *, trust_remote_code: bool = False, for_inference: bool = False
) -> Any:
    """``AutoModelForImageClassification``; the keywords are ``load_head``'s."""
    from transformers import AutoModelForImageClassification

    from lmforge.tasks.heads import label_config, load_head

    try:
        return load_head(
            AutoModelForImageClassification,
            path,
            "image-classification",
            trust_remote_code=trust_remote_code,
            for_inference=for_inference,
            **label_config(info.labels, info.multi_label),
        )
    except LmforgeError as e:
        raise LmforgeError(
            f"{e}. For images give a vision model (a ViT directory) or model.preset: "
            f"{' or '.join(VISION_PRESETS)}"
        ) from None


def preset_processor(preset: str, info: ImageInfo) -> Any:
    """A ViT processor for the data: resize to the preset's side (bilinear), divide by the
    brightest training pixel, normalise each channel to [-1, 1] (ViT's mean = std = 0.5)."""
    from transformers import ViTImageProcessorPil

    side = VISION_PRESETS[preset]["image_size"]
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": side, "width": side},
        resample=2,  # PIL bilinear
        do_rescale=True,
        rescale_factor=1.0 / info.value_max,
        do_normalize=True,
        image_mean=[0.5] * info.channels,
        image_std=[0.5] * info.channels,
    )


def from_preset(preset: str, info: ImageInfo, tokenizer_dir: Path | None) -> tuple[Any, Any]:
    """A freshly initialised ViT and its processor (``tokenizer_dir`` is unused: no text)."""
    from transformers import ViTConfig, ViTForImageClassification

    from lmforge.tasks.heads import label_config

    config = ViTConfig(
        **VISION_PRESETS[preset],
        num_channels=info.channels,
        **label_config(info.labels, info.multi_label),
    )
    return ViTForImageClassification(config), preset_processor(preset, info)


def _flat_pixels(docs: list[Document], info: ImageInfo, side: int | None) -> Any:
    """(N, features) raw pixels in [0, 1], shrunk to side x side when given."""
    import numpy as np
    from PIL import Image

    rows = []
    for d in docs:
        a = (_array(d.image, info.channels) / info.value_max).astype("float32")  # (H, W, C)
        if side is not None:
            a = np.stack(
                [
                    np.asarray(Image.fromarray(a[:, :, c]).resize((side, side), Image.BILINEAR))
                    for c in range(a.shape[-1])
                ],
                axis=-1,
            )
        rows.append(a.reshape(-1))
    return np.stack(rows)


def baseline(splits: Splits, info: ImageInfo) -> dict[str, Any] | None:
    """An RBF-kernel SVM on raw pixels, the classic digits baseline, trained on the same
    train split; C is picked by 3-fold cross-validation on that split. Single-label only."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    if info.multi_label:
        return None
    train, test = splits["train"], splits["test"]
    shapes = {len(d.image) * len(d.image[0]) * info.channels for d in train + test}
    side = None if len(shapes) == 1 and max(shapes) <= SVM_MAX_FEATURES else 32
    folds = min(3, min(Counter(d.label for d in train).values()))
    svm: Any = SVC(kernel="rbf", gamma="scale", C=10.0)
    if folds >= 2:
        svm = GridSearchCV(svm, {"C": [1.0, 10.0, 100.0]}, cv=folds)
    svm.fit(_flat_pixels(train, info, side), [d.label for d in train])
    preds = [str(p) for p in svm.predict(_flat_pixels(test, info, side))]
    c = svm.best_params_["C"] if folds >= 2 else svm.C
    scores = classification.metrics([d.label for d in test], preds, info)
    return {
        "method": "rbf-svm on raw pixels",
        "C": c,
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
    }


TASKS.add(
    "image-classification",
    Task(
        "image-classification",
        "image classification with a Vision Transformer (ViT), single- or multi-label",
        "IMAGE_CLS",
        prepare,
        load_model,
        encode,
        classification.predict,
        classification.metrics,
        load_processor=load_processor,
        presets=tuple(VISION_PRESETS),
        from_preset=from_preset,
        preset_uses_tokenizer=False,
        baseline=baseline,
        report=classification.report,
    ),
)
