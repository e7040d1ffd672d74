"""Personal-data scrubbing: replace e-mails, phones, IPv4s, card numbers and Chinese resident
IDs with typed placeholders, so a model never memorises them but still sees that one was there.

Patterns favour precision: numbers are matched only as whole digit runs (never inside a longer
number or an alphanumeric ID), card numbers must pass the Luhn check and Chinese IDs their
GB 11643-1999 checksum and date of birth, and phone formats need a ``+``, brackets, separators
or the Chinese mobile prefix, so years, dates and bare counts are left alone.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Callable, Iterable

from lmforge.data.config import PII_TYPES

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ipv4": "<IP>",
    "credit_card": "<CREDIT_CARD>",
    "cn_id": "<CN_ID>",
}
# E-mail first (QQ addresses are phone-like digits), then the checksummed numbers, whose digits
# a phone pattern could otherwise claim, then IPs, then phones.
ORDER = ("email", "cn_id", "credit_card", "ipv4", "phone")

# Lookarounds use ASCII classes rather than \b or \w: Chinese characters are \w, and
# "请联系13812345678咨询" must still match.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![A-Za-z0-9.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")
_CARD = re.compile(r"(?<![\d+.-])\d(?:[ -]?\d){12,18}(?![\d-]|\.\d)")
_CN_ID = re.compile(
    r"(?<![A-Za-z0-9])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
    r"(?![A-Za-z0-9])"
)
_NOT_BEFORE = r"(?<![A-Za-z0-9_.+-])"
_NOT_AFTER = r"(?![A-Za-z0-9_]|[.-]\d)"
_PHONES = (
    # Chinese mobile: 1[3-9]x xxxx xxxx, optional +86 / 0086, optional spaces or dashes 3-4-4.
    re.compile(rf"{_NOT_BEFORE}(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{{4}}){{2}}{_NOT_AFTER}"),
    # International with a leading +: +44 20 7946 0958, +49 (0)30 1234567, +1 415-555-0123.
    re.compile(
        rf"{_NOT_BEFORE}\+[1-9]\d{{0,2}}(?:[ .-]?\(\d{{1,4}}\))?(?:[ .-]?\d{{1,5}}){{2,5}}{_NOT_AFTER}"
    ),
    # NANP without country code: (415) 555-0123, 415-555-0123, 415.555.0123. Area code and
    # exchange start with 2-9 and the last group needs a separator, so bare numbers stay.
    re.compile(
        rf"{_NOT_BEFORE}(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-]?)[2-9]\d\d[ .-]\d{{4}}{_NOT_AFTER}"
    ),
)

# GB 11643-1999: weight of digit i is 2^(17-i) mod 11; the check character is indexed by the
# weighted sum mod 11.
_CN_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_CN_ID_CHECK = "10X98765432"


def cn_id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits of a resident ID."""
    return _CN_ID_CHECK[sum(int(d) * w for d, w in zip(first17, _CN_ID_WEIGHTS, strict=True)) % 11]


def is_valid_cn_id(number: str) -> bool:
    """True for an 18-character resident ID with a real date of birth and the right check."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return number[17].upper() == cn_id_check_char(number[:17])


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer(digits: str) -> bool:
    """Whether the number starts like a major network's card (Visa, Mastercard, Amex, Discover,
    JCB, Diners, UnionPay). Luhn alone lets one in ten random digit runs through, such as a
    row of years "2019 2020 2021 2022"."""
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    return (
        digits[0] == "4"
        or 51 <= p2 <= 55
        or 2221 <= p4 <= 2720
        or p2 in (30, 34, 35, 36, 37, 38, 39, 62, 65)
        or p4 == 6011
        or 644 <= p3 <= 649
    )


def _is_card(match: str) -> bool:
    digits = re.sub(r"[ -]", "", match)
    return 13 <= len(digits) <= 19 and _card_issuer(digits) and luhn_ok(digits)


def _phone_digits_ok(match: str) -> bool:
    return 7 <= sum(c.isdigit() for c in match) <= 15  # E.164 allows at most 15 digits


_CHECKS: dict[str, tuple[tuple[re.Pattern[str], ...], Callable[[str], bool] | None]] = {
    "email": ((_EMAIL,), None),
    "cn_id": ((_CN_ID,), is_valid_cn_id),
    "credit_card": ((_CARD,), _is_card),
    "ipv4": ((_IPV4,), None),
    "phone": (_PHONES, _phone_digits_ok),
}


def _replace(
    pattern: re.Pattern[str], valid: Callable[[str], bool] | None, placeholder: str, text: str
) -> tuple[str, int]:
    """``pattern.subn`` that keeps matches ``valid`` rejects."""
    replaced = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal replaced
        if valid is not None and not valid(m.group()):
            return m.group()
        replaced += 1
        return placeholder

    return pattern.sub(sub, text), replaced


def scrub_pii(text: str, types: Iterable[str]) -> tuple[str, Counter[str]]:
    """Replace personal data of the given ``types`` with ``PLACEHOLDERS`` and count them.

    Types are applied in ``ORDER`` whatever order they are given in, so a valid resident ID is
    never taken for a card number (a Hunan ID starts like a Visa card) or part of a phone.

    Raises:
        ValueError: for a type not in ``PII_TYPES``.
    """
    wanted = set(types)
    unknown = wanted - set(PII_TYPES)
    if unknown:
        raise ValueError(f"unknown PII type(s) {sorted(unknown)}; choose from {list(PII_TYPES)}")
    counts: Counter[str] = Counter()
    if not any(c.isdigit() for c in text) and "@" not in text:
        return text, counts  # every pattern needs a digit or an '@'
    for kind in ORDER:
        if kind in wanted:
            patterns, valid = _CHECKS[kind]
            for pattern in patterns:
                text, n = _replace(pattern, valid, PLACEHOLDERS[kind], text)
                counts[kind] += n
    return text, +counts  # unary + drops zero counts
