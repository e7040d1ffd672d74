"""Images as data: pixel rows in a record, image files named by a record, or an image folder.

An image document keeps its pixels in ``Document.image``: rows of grey values, or rows of
``[r, g, b]`` triples. Values are integers 0-255 (files are read as 8-bit), any integer scale
such as the digits' 0-16, or floats in [0, 1]. Pixels, not paths, travel through the data
stage, so deduplication and the train/val/test split key on what the image shows.

Three ways in (``lmforge.data.sources`` calls these):

* a JSONL/Parquet text column holding pixel rows (a CSV cell holding them as JSON);
* a text column holding an image file's path (PNG, JPEG, ...), relative to the data file;
* an image folder, ``<dir>/<class>/*.png``: the sub-folder names are the labels
  (torchvision's ``ImageFolder`` layout).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice, zip_longest
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError
from lmforge.data.document import Document

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # read as 8-bit grey; everything else as RGB


def is_image_path(text: str) -> bool:
    return len(text) < 4096 and "\n" not in text and text.strip().lower().endswith(IMAGE_EXTENSIONS)


def pixel_rows(value: Any) -> list | None:
    """``value`` as pixel rows if it is a non-empty rectangle of numbers (H, W) or of
    ``[r, g, b]`` triples (H, W, 3); else None."""
    if not isinstance(value, list | tuple) or not value:
        return None
    rows = [list(r) for r in value if isinstance(r, list | tuple)]
    if len(rows) != len(value) or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        return None
    cells = [c for r in rows for c in r]
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in cells):
        return rows
    if all(
        isinstance(c, list | tuple) and len(c) == 3 and all(isinstance(v, int | float) for v in c)
        for c in cells
    ):
        return [[list(c) for c in r] for r in rows]
    return None


def read_image(path: Path) -> list:
    """An image file as 8-bit pixel rows: grey images as (H, W), colour ones as (H, W, 3)
    (alpha dropped, palettes expanded)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if img.mode in GREY_MODES else "RGB")
            return np.asarray(img).tolist()
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read the image {path}: {e}") from None


def _as_rgb(image: list) -> list:
    return [[[v, v, v] for v in row] for row in image]


def uniform_channels(docs: list[Document]) -> list[Document]:
    """Grey images become RGB when a source mixes both, so one source has one pixel layout
    (a Parquet column has one type; a model has one input channel count)."""
    images = [d for d in docs if d.image is not None]
    if any(isinstance(d.image[0][0], list) for d in images) and not all(
        isinstance(d.image[0][0], list) for d in images
    ):
        for d in images:
            if not isinstance(d.image[0][0], list):
                d.image = _as_rgb(d.image)
    return docs


def attach_images(docs: Iterable[Document], base: Path) -> Iterator[Document]:
    """Give records whose text is an image path (relative to ``base``, the data file's folder)
    or pixel rows as JSON (a CSV cell) their pixels. A path to no file stays text: the
    image-classification task then names the rows that have no image."""
    for doc in docs:
        text = doc.text.strip()
        if doc.image is None and text.startswith("[[") and text.endswith("]"):
            try:
                rows = pixel_rows(json.loads(text))
            except json.JSONDecodeError:
                rows = None
            if rows is not None:
                doc.image, doc.text = rows, ""
        elif doc.image is None and is_image_path(text):
            path = base / text
            if path.is_file():
                doc.image = read_image(path)
        yield doc


def is_image_folder(root: Path) -> bool:
    """``root/<class>/<image>`` files and no record files: torchvision's ImageFolder layout."""
    if not root.is_dir():
        return False
    classes = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return any(
        p.suffix.lower() in IMAGE_EXTENSIONS for d in classes for p in d.iterdir()
    ) and not any(
        p.suffix.lower() in (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
        for p in root.rglob("*")
    )


def read_image_folder(root: Path, limit: int | None = None) -> list[Document]:
    """One document per image under ``root/<class>/``, labelled with its folder's name.

    Classes take turns (as the built-in datasets do) so ``limit=N`` keeps every class; the
    text is the image's path relative to ``root``, shown next to predictions.
    """

    def images(class_dir: Path) -> Iterator[Document]:
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                rel = path.relative_to(root).as_posix()
                yield Document(
                    rel,
                    label=class_dir.name,
                    image=read_image(path),
                    meta={"source": root.name, "id": rel},
                )

    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    turns = (d for row in zip_longest(*(images(c) for c in classes)) for d in row if d)
    return uniform_channels(list(islice(turns, limit)))
