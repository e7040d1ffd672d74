"""Built-in TCAV concepts: short example texts that show one idea, in a model's language.

``sport-en`` is sport vocabulary for the BBC topic classifier's ``sport`` class;
``praise-zh`` / ``complaint-zh`` are praising / complaining review phrases for Chinese
sentiment. Written for lmforge (no external source); a user's own concept is a text file.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.core.errors import DataError

BUILTIN: dict[str, tuple[str, ...]] = {
    "sport-en": (
        "the striker scored a late goal in the second half",
        "the champions won the league title after the final match",
        "the coach named his squad for the world cup qualifier",
        "the tennis player reached the semi-final at wimbledon",
        "the team lost the match after a penalty in extra time",
        "the midfielder was injured during training this week",
        "the rugby side beat their rivals in the six nations",
        "the sprinter set a new record in the olympic final",
        "the goalkeeper saved two penalties in the shoot-out",
        "fans cheered as the club won the cup at the stadium",
        "the captain scored a century in the test match",
        "the manager praised his players after the victory",
        "the defender was sent off for a foul in the first half",
        "the athlete won gold in the championship race",
        "the boxer retained his title after twelve rounds",
        "the season opener ended in a draw at home",
        "the referee awarded a free kick near the box",
        "the marathon runner finished third in the race",
        "the club signed a new forward before the transfer deadline",
        "the players trained hard before the derby match",
    ),
    "praise-zh": (
        "质量很好，非常满意",
        "物超所值，强烈推荐",
        "服务态度很好，下次还会再来",
        "包装精美，送货很快",
        "性价比很高，值得购买",
        "非常好用，很喜欢",
        "酒店干净整洁，环境不错",
        "客服很耐心，好评",
        "东西不错，五星好评",
        "效果很好，超出预期",
        "做工精细，手感很好",
        "房间舒适，早餐丰富",
        "屏幕清晰，速度很快",
        "味道很好，分量足",
        "很满意的一次购物",
        "服务周到，位置方便",
        "外观漂亮，质量过硬",
        "宝贝收到了，很喜欢",
        "用了一段时间，感觉很好",
        "价格实惠，推荐购买",
    ),
    "complaint-zh": (
        "质量太差，非常失望",
        "服务态度恶劣，再也不来了",
        "房间很脏，隔音很差",
        "用了两天就坏了",
        "客服不理人，差评",
        "价格太贵，不值这个钱",
        "送货太慢，包装破损",
        "屏幕有坏点，退货",
        "味道很难吃，不推荐",
        "电池不耐用，发热严重",
        "和描述不符，上当了",
        "前台态度差，等了很久",
        "做工粗糙，有异味",
        "卫生间漏水，没人管",
        "系统很卡，后悔买了",
        "噪音太大，晚上睡不着",
        "早餐很差，品种太少",
        "售后不负责，很生气",
        "质量不好，一般般",
        "不会再买了，太失望",
    ),
}


def concept_texts(builtin: str | None = None, path: Path | None = None) -> list[str]:
    """A concept's example texts: a built-in set, or one per non-empty line of ``path``.

    Raises:
        DataError: the set is empty (an empty file names the file).
    """
    if builtin is not None:
        texts = list(BUILTIN[builtin])
        where = f"built-in concept {builtin!r}"
    else:
        assert path is not None
        texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
        texts = [t for t in texts if t]
        where = str(path)
    if len(texts) < 2:
        raise DataError(
            f"tcav: {where} has {len(texts)} concept example(s); a concept needs at least 2 "
            "(one text per line; 20 or more give a stable concept vector)"
        )
    return texts
