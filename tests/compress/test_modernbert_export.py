"""A ModernBERT classifier (the Chinese recipes' encoder family) exports to ONNX with the
logits of torch, and draws attention maps: both paths were written for BERT."""

import torch
from helpers import tiny_modernbert

from lmforge.compress.export import export_onnx, onnx_max_diff, parity_batches
from lmforge.explain.attention import use_eager_attention


def test_modernbert_exports_to_onnx_with_torchs_logits(tmp_path):
    model = tiny_modernbert(num_labels=3).eval()
    path = export_onnx(model, tmp_path, 18)
    assert onnx_max_diff(model, path, parity_batches(model.config.vocab_size)) < 1e-4


def test_modernbert_returns_attention_weights_for_the_maps():
    model = tiny_modernbert(num_labels=3).eval()
    use_eager_attention(model)
    with torch.no_grad():
        out = model(input_ids=torch.randint(3, 100, (1, 9)), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 2, 9, 9)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(1, 2, 9))
