"""An adapter on a masked-LM checkpoint (a run's pretrain/model) reloads to the same model.

Such a checkpoint has no pooler, which a BERT classifier reads: loading initialises it at
random. Unless the adapter trains and saves it with the head, the saved adapter loads onto
another random pooler, and the reloaded model predicts something else than the trained one.
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_bert
from transformers import BertForMaskedLM

from lmforge.finetune.methods import MethodConfig, apply_method
from lmforge.tasks import TASKS
from lmforge.tasks.classification import LabelInfo


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt"])
def test_adapter_on_a_checkpoint_without_pooler_reloads_the_trained_model(tmp_path, method):
    from peft import PeftModel

    tiny_bert(BertForMaskedLM).save_pretrained(tmp_path / "mlm")  # no pooler weights
    task = TASKS.get("classification")
    info = LabelInfo(labels=["a", "b", "c"])
    torch.manual_seed(1)
    model = task.load_model(tmp_path / "mlm", info)
    model = apply_method(method, model, MethodConfig(r=4, num_virtual_tokens=2), "SEQ_CLS", 10)
    model.eval()
    ids = torch.randint(5, 100, (2, 12))
    with torch.no_grad():
        trained = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")

    torch.manual_seed(2)  # another random initialisation of whatever the checkpoint lacks
    base = task.load_model(tmp_path / "mlm", info)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, trained, atol=1e-6)
