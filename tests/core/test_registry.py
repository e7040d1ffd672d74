import pytest

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import Registry


def test_register_get_and_names():
    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1)

    @reg.register("beta")
    def beta():  # noqa: ANN202
        return 2

    assert reg.get("alpha") == 1 and reg.get("beta")() == 2
    assert reg.names() == ["alpha", "beta"] and "alpha" in reg and len(reg) == 2


def test_duplicate_name_is_rejected():
    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha", 2)


def test_unknown_name_suggests_closest():
    reg: Registry[int] = Registry("dataset")
    reg.add("bbc-news", 1)
    reg.add("wiki-en", 2)
    with pytest.raises(LmforgeError, match="unknown dataset 'bbc-new'; did you mean 'bbc-news'"):
        reg.get("bbc-new")
