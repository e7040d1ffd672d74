"""Labelled files in another encoding: finetune.data.encoding reads them, replaced bytes are
counted and reported, and labels that lost their bytes stop the run instead of merging."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from lmforge.cli import main
from lmforge.core.errors import DataError, RecipeError
from lmforge.data.config import SourceConfig
from lmforge.data.sources import LoadStats, load_source
from lmforge.finetune.config import FinetuneConfig
from lmforge.recipe import parse_recipe
from lmforge.tasks.data import load_labelled

LABELS = ["体育", "政治", "经济"]  # three classes; in utf-8 all of them read as '����'


def write_csv(path: Path, rows: list[tuple[str, str]], encoding: str) -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def gbk_files(tmp_path: Path) -> tuple[Path, Path]:
    rows = [(f"第{i}条新闻，内容关于{LABELS[i % 3]}。", LABELS[i % 3]) for i in range(12)]
    return (
        write_csv(tmp_path / "train.csv", rows, "gbk"),
        write_csv(tmp_path / "test.csv", rows[:6], "gbk"),
    )


def ctx() -> SimpleNamespace:
    return SimpleNamespace(recipe=SimpleNamespace(seed=0), stage_dir=lambda stage: None)


def finetune_cfg(train: Path, test: Path, **data) -> FinetuneConfig:
    return FinetuneConfig(task="classification", data={"train": train, "test": test, **data})


def test_gbk_labels_read_as_utf8_stop_the_run_naming_file_and_encoding(tmp_path):
    train, test = gbk_files(tmp_path)
    with pytest.raises(DataError) as e:
        load_labelled(finetune_cfg(train, test), ctx())
    msg = str(e.value)
    assert str(train) in msg and "labels contain the replacement character U+FFFD" in msg
    assert "not valid utf-8" in msg and "finetune.data.encoding" in msg


def test_finetune_data_encoding_reads_gbk_files_with_all_three_classes(tmp_path):
    train, test = gbk_files(tmp_path)
    stats: dict[str, LoadStats] = {}
    splits = load_labelled(finetune_cfg(train, test, encoding="gbk"), ctx(), stats)
    assert sorted({d.label for d in splits["train"]}) == sorted(LABELS)
    assert splits["train"][0].text == "第0条新闻，内容关于体育。"
    assert set(stats) == {"train", "test"}
    assert stats["train"].documents == 12 and stats["train"].undecodable_bytes == 0


def test_replaced_bytes_in_texts_are_counted_and_reported(tmp_path, caplog):
    rows = [("good text", "a"), ("also good", "b")] * 3
    train = write_csv(tmp_path / "train.csv", rows, "utf-8")
    with train.open("ab") as f:
        f.write(b"caf\xe9 \xff text,a\n")  # latin-1 bytes in a utf-8 file: 2 bad bytes
    stats: dict[str, LoadStats] = {}
    with caplog.at_level(logging.WARNING, logger="lmforge"):
        splits = load_labelled(finetune_cfg(train, train), ctx(), stats)
    assert splits["train"][-1].text == "caf\ufffd \ufffd text"
    assert stats["train"].undecodable_bytes == 2
    assert stats["train"].undecodable_files == ["train.csv"]
    assert "finetune.data.train: 2 undecodable bytes" in caplog.text


def test_the_data_stage_also_stops_on_labels_that_did_not_decode(tmp_path):
    train, _ = gbk_files(tmp_path)
    with pytest.raises(DataError, match="12 labels contain the replacement character"):
        load_source(SourceConfig(path=train, label_column="label"), LoadStats())
    docs = load_source(SourceConfig(path=train, label_column="label", encoding="gbk"), LoadStats())
    assert {d.label for d in docs} == set(LABELS)


def test_labels_saved_with_replacement_characters_are_refused_too(tmp_path):
    """A file converted lossily before it reached us: no decoding error, same merged classes."""
    rows = [("a text", "\ufffd\ufffd"), ("b text", "\ufffd\ufffd"), ("c text", "ok")]
    train = write_csv(tmp_path / "train.csv", rows, "utf-8")
    with pytest.raises(DataError, match="the file itself holds U\\+FFFD"):
        load_labelled(finetune_cfg(train, train), ctx())


def test_an_unknown_encoding_is_a_recipe_error_naming_the_key(tmp_path):
    train, test = gbk_files(tmp_path)
    raw = {"name": "t", "finetune": {"data": {"train": str(train), "test": str(test)}}}
    with pytest.raises(RecipeError, match="finetune.data.encoding: .*unknown text encoding 'gbkk'"):
        parse_recipe(raw, "r.yaml", ["finetune.data.encoding=gbkk"])
    raw["data"] = {"sources": [{"path": str(train), "encoding": "nope"}]}
    with pytest.raises(RecipeError, match="data.sources.0.encoding: .*unknown text encoding"):
        parse_recipe(raw, "r.yaml")


# ---------------------------------------------------------------- empty files


@pytest.mark.parametrize(
    ("split", "content", "reason"),
    [
        ("train", "", "is empty (0 bytes)"),
        ("train", "text,label\n", "has a header line but no rows"),
        ("test", "", "is empty (0 bytes)"),
        ("test", "text,label\n\n", "has a header line but no rows"),
        ("test", "\n \n", "holds only blank lines"),
    ],
)
def test_an_empty_train_or_test_file_says_so_naming_it(tmp_path, split, content, reason):
    good = write_csv(tmp_path / "good.csv", [("x", "a"), ("y", "b")], "utf-8")
    empty = tmp_path / f"{split}.csv"
    empty.write_text(content, encoding="utf-8")
    files = {"train": good, "test": good, split: empty}
    with pytest.raises(DataError) as e:
        load_labelled(finetune_cfg(files["train"], files["test"]), ctx())
    assert str(e.value).startswith(f"finetune.data.{split}: {empty} {reason}")


def test_an_empty_jsonl_test_file_fails_the_run_with_that_message(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", [("x", "a"), ("y", "b")], "utf-8")
    test = tmp_path / "test.jsonl"
    test.write_text("")
    recipe = {
        "name": "empty",
        "finetune": {"method": "full", "data": {"train": str(train), "test": str(test)}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 1
    assert f"finetune.data.test: {test} is empty (0 bytes)" in capsys.readouterr().err
