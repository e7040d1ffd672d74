"""Every stage that runs a model picks its device the same way, and says which it picked."""

from __future__ import annotations

import logging

import pytest
import torch

from lmforge.core.errors import LmforgeError, RecipeError
from lmforge.core.hardware import stage_device
from lmforge.recipe import parse_recipe


def test_auto_is_the_gpu_when_there_is_one_and_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="lmforge"):
        device = stage_device("auto", "finetune.device")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "finetune.device=auto" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_an_error_naming_the_key():
    with pytest.raises(LmforgeError, match="evaluate.device: cuda requested"):
        stage_device("cuda", "evaluate.device")


@pytest.mark.parametrize("section", ["pretrain", "finetune", "evaluate"])
def test_every_model_stage_has_a_device_key(section):
    raw = {
        "name": "t",
        "data": {"sources": [{"builtin": "bbc-news"}]},
        "tokenizer": {},
        "finetune": {},
        "pretrain": {},
        "evaluate": {},
    }
    raw[section]["device"] = "tpu"
    with pytest.raises(RecipeError, match=f"{section}.device"):
        parse_recipe(raw)
    raw[section]["device"] = "cpu"
    assert getattr(parse_recipe(raw), section).device == "cpu"
