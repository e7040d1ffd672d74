import pytest

from lmforge.core.errors import DataError
from lmforge.data.document import Document
from lmforge.data.shards import read_split, write_shards

DOCS = [
    Document("hello world", label="tech", meta={"source": "a.txt", "id": "0"}),
    Document("江泽民", tokens=["江", "泽", "民"], tags=["B-PER", "I-PER", "I-PER"]),
    Document("", label="3", image=[[0, 16], [8, 4]]),
]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_shards_roundtrip_every_field(tmp_path, fmt):
    names = write_shards(DOCS, tmp_path, "train", fmt, shard_docs=2)
    assert names == [f"train-00000.{fmt}", f"train-00001.{fmt}"]
    back = read_split(tmp_path, "train")
    assert [d.text for d in back] == [d.text for d in DOCS]
    assert back[0].label == "tech" and back[0].meta == {"source": "a.txt", "id": "0"}
    assert back[1].tags == ["B-PER", "I-PER", "I-PER"] and back[1].tokens == ["江", "泽", "民"]
    assert back[2].image == [[0, 16], [8, 4]]


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no 'val' shards"):
        read_split(tmp_path, "val")
