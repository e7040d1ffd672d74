"""Bottleneck adapters: what trains, the identity start, and saved models that lmforge loads with
its own code (never the directory's) and plain transformers loads by the user's choice."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import minilm_shaped_classifier
from safetensors.torch import load_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    MarianConfig,
    MarianMTModel,
    RobertaConfig,
    RobertaForTokenClassification,
    T5Config,
    T5ForConditionalGeneration,
    ViTConfig,
    ViTForImageClassification,
    XLNetConfig,
    XLNetForSequenceClassification,
)

from lmforge.core.errors import LmforgeError
from lmforge.finetune.methods import MethodConfig, apply_method, trainable_parameters
from lmforge.finetune.modeling_bottleneck_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS

CFG = MethodConfig(adapter_size=8)
SMALL = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100, num_hidden_layers=2, max_position_embeddings=64, num_labels=3, **SMALL
    )
    return BertForSequenceClassification(config).eval()


def ids(vocab: int = 100) -> torch.Tensor:
    return torch.randint(1, vocab, (4, 12), generator=torch.Generator().manual_seed(0))


def train_steps(model: torch.nn.Module, steps: int = 3) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=ids(), labels=torch.tensor([0, 1, 2, 1])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_only_adapters_and_head_train_and_frozen_weights_stay():
    model = apply_method("adapter", tiny_bert(), CFG, "SEQ_CLS", total_steps=3)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(
        ".bottleneck_adapter." in n or n.startswith("classifier.") for n in trainable
    )
    assert sum(".bottleneck_adapter.up.weight" in n for n in trainable) == 2  # one per layer
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and changed <= set(trainable)
    assert any(".bottleneck_adapter.up." in n for n in changed)


def test_a_fresh_adapter_computes_exactly_what_the_base_model_did():
    base = tiny_bert()
    with torch.no_grad():
        expected = base(input_ids=ids()).logits
        adapted = apply_method("adapter", base, CFG, "SEQ_CLS", total_steps=1).eval()
        assert torch.equal(adapted(input_ids=ids()).logits, expected)


def test_minilm_shape_trains_under_one_and_a_half_percent():
    model = minilm_shaped_classifier()
    total_before = sum(p.numel() for p in model.parameters())
    model = apply_method("adapter", model, MethodConfig(adapter_size=64), "SEQ_CLS", 10)
    trainable, total = trainable_parameters(model)
    assert total - total_before == 6 * (384 * 64 + 64 + 64 * 384 + 384) == 297_600
    assert trainable == 297_600 + 384 * 5 + 5  # adapters + the 5-way classifier
    assert trainable / total < 0.015


# each architecture's feed-forward output is found, once per layer (encoder and decoder)
ARCHITECTURES = {
    "bert": (lambda: tiny_bert(), 2),
    "roberta": (
        lambda: RobertaForTokenClassification(
            RobertaConfig(vocab_size=100, num_hidden_layers=2, num_labels=3, **SMALL)
        ),
        2,
    ),
    "distilbert": (
        lambda: DistilBertForSequenceClassification(
            DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
        ),
        2,
    ),
    "gpt2": (
        lambda: GPT2LMHeadModel(
            GPT2Config(
                vocab_size=100, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
            )
        ),
        2,
    ),
    "llama": (
        lambda: LlamaForCausalLM(
            LlamaConfig(vocab_size=100, num_hidden_layers=2, num_key_value_heads=2, **SMALL)
        ),
        2,
    ),
    "t5": (
        lambda: T5ForConditionalGeneration(
            T5Config(vocab_size=100, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16)
        ),
        4,
    ),
    "marian": (
        lambda: MarianMTModel(
            MarianConfig(
                vocab_size=100,
                d_model=32,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                pad_token_id=0,
                decoder_start_token_id=0,
            )
        ),
        2,
    ),
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_one_adapter_per_feed_forward_block_and_identity_at_init(arch):
    build, layers = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model = build().eval()
    task = {"roberta": "TOKEN_CLS", "distilbert": "SEQ_CLS"}.get(arch, "CAUSAL_LM")
    if arch in ("t5", "marian"):
        task = "SEQ_2_SEQ_LM"
    inputs = {"input_ids": ids()}
    if task == "SEQ_2_SEQ_LM":
        inputs["decoder_input_ids"] = ids()[:, :5]
    with torch.no_grad():
        expected = model(**inputs).logits
        model = apply_method("adapter", model, CFG, task, total_steps=1).eval()
        assert torch.equal(model(**inputs).logits, expected)
    ups = [n for n, _ in model.named_parameters() if n.endswith("bottleneck_adapter.up.weight")]
    assert len(ups) == layers
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    heads = {n.split(".")[0] for n in trainable if ".bottleneck_adapter." not in n}
    assert heads == ({"classifier"} if task in ("SEQ_CLS", "TOKEN_CLS") else set())


def test_vit_adapts_its_encoder_and_trains_the_classifier():
    config = ViTConfig(
        image_size=8, patch_size=4, num_channels=1, num_hidden_layers=2, num_labels=3, **SMALL
    )
    model = apply_method("adapter", ViTForImageClassification(config), CFG, "IMAGE_CLS", 1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sum(n.endswith("bottleneck_adapter.down.weight") for n in names) == 2
    assert "classifier.weight" in names
    assert model(pixel_values=torch.rand(2, 1, 8, 8)).logits.shape == (2, 3)


def test_unsupported_architecture_names_the_setting():
    config = XLNetConfig(vocab_size=100, d_model=32, n_layer=2, n_head=2, d_inner=64)
    with pytest.raises(LmforgeError, match=r"finetune\.method: adapter .*'xlnet'.*target_modules"):
        apply_method("adapter", XLNetForSequenceClassification(config), CFG, "SEQ_CLS", 1)


def test_target_modules_override_and_too_broad_patterns():
    model = apply_method(
        "adapter",
        tiny_bert(),
        MethodConfig(adapter_size=4, target_modules=[r"layer\.1\.output\.dense"]),
        "SEQ_CLS",
        1,
    )
    assert [n for n, _ in model.named_modules() if n.endswith("bottleneck_adapter")] == [
        "bert.encoder.layer.1.output.dense.bottleneck_adapter"
    ]
    # "output.dense" also ends attention.output.dense: two adapters per layer is another method
    with pytest.raises(LmforgeError, match="matches 4 modules in 2 layers"):
        apply_method(
            "adapter", tiny_bert(), MethodConfig(target_modules=["output.dense"]), "SEQ_CLS", 1
        )
    with pytest.raises(LmforgeError, match="no module name matches"):
        apply_method("adapter", tiny_bert(), MethodConfig(target_modules=["nope"]), "SEQ_CLS", 1)


def test_lmforge_loads_saved_adapters_with_its_own_code_not_the_directorys(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, dynamic_module_utils

    from lmforge.finetune.modeling_bottleneck_adapter import register_auto_classes
    from lmforge.tasks import TASKS
    from lmforge.tasks.classification import LabelInfo

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    )
    loaders = {  # how lmforge's evaluate loads each: the task's head, every weight required
        "bert": (
            tiny_bert(),
            "SEQ_CLS",
            lambda d: TASKS.get("classification").load_model(
                d, LabelInfo(["LABEL_0", "LABEL_1", "LABEL_2"]), for_inference=True
            ),
        ),
        "gpt2": (
            gpt2,
            "CAUSAL_LM",
            lambda d: TASKS.get("instruction").load_model(d, None, for_inference=True),
        ),
    }
    for name, (base, task, load) in loaders.items():
        model = apply_method("adapter", base, CFG, task, total_steps=1)
        for p in model.parameters():  # trained-like adapters: the identity would hide a bug
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.1)
        with torch.no_grad():
            expected = model.eval()(input_ids=ids()).logits
        out = tmp_path / name
        model.save_pretrained(out)
        # the copy saved for plain-transformers users is not what lmforge runs
        (out / "modeling_bottleneck_adapter.py").write_text("raise RuntimeError('copy ran')\n")
        loaded = load(out).eval()
        assert type(loaded).__name__.endswith("WithBottleneckAdapters")
        with torch.no_grad():
            assert torch.equal(loaded(input_ids=ids()).logits, expected)
    # plain transformers in a process that has lmforge: register, then load without remote code
    assert register_auto_classes(tmp_path / "gpt2") is True
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2").eval()
    assert type(model).__name__ == "GPT2LMHeadModelWithBottleneckAdapters"
    assert not (tmp_path / "modules").exists()  # nothing was copied from a directory to import


# Runs in a fresh interpreter where importing lmforge fails: the saved directories load in plain
# transformers when the user opts in (trust_remote_code=True after reading the copied module),
# and their adapter files with the copied module.
PLAIN_LOAD = textwrap.dedent(
    r"""
    import importlib.abc, importlib.util, json, sys
    class NoLmforge(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "lmforge":
                raise ImportError("lmforge must not be needed")
    sys.meta_path.insert(0, NoLmforge())
    import torch, transformers
    out = {}
    for case in json.loads(sys.argv[1]):
        auto = getattr(transformers, case["auto"])
        ref = torch.load(case["ref"], weights_only=True)
        model = auto.from_pretrained(case["dir"], trust_remote_code=True).eval()
        with torch.no_grad():
            diff = (model(input_ids=ref["ids"]).logits - ref["logits"]).abs().max().item()
        # the adapter file alone, on the base model, through the module saved next to it
        spec = importlib.util.spec_from_file_location(
            "copied", case["dir"] + "/modeling_bottleneck_adapter.py"
        )
        copied = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(copied)
        base = getattr(transformers, case["base_class"]).from_pretrained(case["base"])
        restored = copied.load_bottleneck_adapter(base, case["dir"]).eval()
        with torch.no_grad():
            adapter_diff = (restored(input_ids=ref["ids"]).logits - ref["logits"]).abs().max()
        out[case["dir"]] = [type(model).__name__, diff, adapter_diff.item()]
    try:
        transformers.AutoConfig.from_pretrained(case["dir"])
        out["without_trust"] = "loaded"
    except ValueError as e:
        out["without_trust"] = str(e)
    print("\nRESULT " + json.dumps(out))  # after transformers' trust_remote_code prompt
    """
)


def test_saved_models_reload_in_plain_transformers_with_identical_logits(tmp_path):
    def llama_cls():
        config = LlamaConfig(
            vocab_size=100, num_hidden_layers=2, num_key_value_heads=2, num_labels=3, **SMALL
        )
        config.pad_token_id = 0
        return LlamaForSequenceClassification(config)

    def gpt2_lm():
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=100, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
            )
        )

    cases = []
    for name, build, auto, task in (
        ("bert", tiny_bert, "AutoModelForSequenceClassification", "SEQ_CLS"),
        ("gpt2", gpt2_lm, "AutoModelForCausalLM", "CAUSAL_LM"),
        ("llama", llama_cls, "AutoModelForSequenceClassification", "SEQ_CLS"),
    ):
        torch.manual_seed(0)
        base = build()
        base.save_pretrained(tmp_path / f"{name}-base")
        base_class = type(base).__name__
        model = apply_method("adapter", base, CFG, task, total_steps=3)
        for p in model.parameters():  # trained-like adapters: the identity would hide a bug
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.1)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids()).logits
        out = tmp_path / name
        model.save_pretrained(out)
        torch.save({"ids": ids(), "logits": logits}, tmp_path / f"{name}.pt")
        cases.append(
            {
                "auto": auto,
                "dir": str(out),
                "ref": str(tmp_path / f"{name}.pt"),
                "base": str(tmp_path / f"{name}-base"),
                "base_class": base_class,
            }
        )
        config = json.loads((out / "config.json").read_text())
        assert config["model_type"] == f"{name}_bottleneck_adapter"
        assert config["auto_map"][auto].endswith(f"{base_class}WithBottleneckAdapters")
        saved = load_file(out / ADAPTER_WEIGHTS)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert set(saved) == trainable  # the adapter file is exactly what trained
        assert json.loads((out / ADAPTER_CONFIG).read_text())["size"] == CFG.adapter_size

    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.rsplit("\nRESULT ", 1)[1])
    for case in cases:
        cls, diff, adapter_diff = result[case["dir"]]
        assert cls == case["base_class"] + "WithBottleneckAdapters"
        assert diff == 0.0 and adapter_diff == 0.0
    assert "trust_remote_code" in result["without_trust"]  # loud, not silently the base model


def test_finetune_and_evaluate_stages_train_save_and_reload_adapters(tmp_path, monkeypatch):
    import csv

    import yaml
    from transformers import dynamic_module_utils

    from lmforge.cli import main
    from lmforge.data.builtin import load_builtin
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import save_tokenizer, to_transformers, train_tokenizer

    # transformers would copy a directory's code into this cache before importing it
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    docs = load_builtin("bbc-news", limit=60)
    for name, part in (("train", docs[:45]), ("test", docs[45:])):
        with (tmp_path / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([d.text[:400], d.label] for d in part)
    tok = TokenizerConfig(kind="wordpiece", vocab_size=500, model_max_length=64)
    save_tokenizer(to_transformers(train_tokenizer(tok, [d.text for d in docs]), tok), tmp_path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=500, num_hidden_layers=1, max_position_embeddings=64, **SMALL)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    recipe = {
        "name": "ft-adapter",
        "finetune": {
            "method": "adapter",
            "method_config": {"adapter_size": 8},
            "model": {"path": str(tmp_path)},
            "data": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")},
            "epochs": 1,
            "max_length": 64,
        },
        "evaluate": {"profile": False},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 0
    stages = json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]
    ft, ev = stages["finetune"]["metrics"], stages["evaluate"]["metrics"]
    # adapters (32*8+8 + 8*32+32) in one layer + the 5-way head (32*5+5)
    assert ft["trainable_params"] == 552 + 165
    assert ev["accuracy"] == pytest.approx(ft["accuracy"])  # the reloaded model scores the same
    saved = tmp_path / "run" / "finetune" / "model"
    assert (saved / "modeling_bottleneck_adapter.py").exists()
    assert (saved / "tokenizer.json").exists() and (saved / ADAPTER_WEIGHTS).exists()
    assert not (tmp_path / "modules").exists()  # evaluate loaded it with lmforge's own code
