from collections import Counter

import pytest

from lmforge.data.config import PII_TYPES
from lmforge.data.pii import PLACEHOLDERS, luhn_ok, scrub_pii


def gb11643_check(first17: str) -> str:
    """The check character, computed here from the standard rather than via the module."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


VALID_ID = "11010519491231002" + gb11643_check("11010519491231002")  # Beijing, born 1949-12-31
WRONG_CHECK = VALID_ID[:17] + ("0" if VALID_ID[17] != "0" else "1")


def scrub(text: str, *types: str) -> tuple[str, Counter[str]]:
    return scrub_pii(text, types or PII_TYPES)


def test_placeholders_cover_every_type():
    assert set(PLACEHOLDERS) == set(PII_TYPES)


def test_email():
    text = "Write to john.doe+news@mail.example.co.uk, or 13812345678@qq.com."
    assert scrub(text) == ("Write to <EMAIL>, or <EMAIL>.", Counter(email=2))
    assert scrub("请发邮件至zhang.san@example.cn咨询") == (
        "请发邮件至<EMAIL>咨询",
        Counter(email=1),
    )


@pytest.mark.parametrize(
    "phone",
    ["+1 415-555-0123", "(415) 555-0123", "415.555.0123", "+44 20 7946 0958", "+49 (0)30 1234567"],
)
def test_international_and_nanp_phones(phone):
    assert scrub(f"Call {phone} today.") == ("Call <PHONE> today.", Counter(phone=1))


def test_chinese_mobiles():
    text = "请联系13812345678咨询，或拨打+86 139 1234 5678、0086-150-1234-5678。"
    out, counts = scrub(text)
    assert out == "请联系<PHONE>咨询，或拨打<PHONE>、<PHONE>。"
    assert counts == Counter(phone=3)


@pytest.mark.parametrize(
    "text",
    [
        "Founded in 1998, listed on 2001-05-12, results for 2019 2020 2021 2022.",
        "Order 123456789012345678901 and 12/03/2021 at 19:30, pi is 3.1415926535.",
        "Account x13812345678 and 138123456789 and 1138123456789.",  # inside longer IDs
        "Prices 100 200 3000 and 415-555-01234.",
        "Version 1.2.3.4.5 and 256.1.1.1.",
    ],
)
def test_numbers_that_are_not_pii_are_kept(text):
    assert scrub(text) == (text, Counter())


def test_ipv4():
    text = "Server 192.168.1.1 and 10.0.0.255."
    assert scrub(text) == ("Server <IP> and <IP>.", Counter(ipv4=2))
    assert scrub("Bad 999.1.1.1 and 1.2.3.256")[1] == Counter()


def test_credit_cards_need_the_luhn_check():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    text = "Visa 4111 1111 1111 1111, Amex 3782-822463-10005, Mastercard 5555555555554444."
    assert scrub(text) == (
        "Visa <CREDIT_CARD>, Amex <CREDIT_CARD>, Mastercard <CREDIT_CARD>.",
        Counter(credit_card=3),
    )
    invalid = "Card 4111 1111 1111 1112 and 5555555555554445."
    assert scrub(invalid) == (invalid, Counter())


def test_chinese_resident_id_needs_checksum_and_date():
    assert scrub(f"身份证号{VALID_ID}，请核对") == ("身份证号<CN_ID>，请核对", Counter(cn_id=1))
    lower_x = "11010519800101001" + gb11643_check("11010519800101001")
    assert scrub(lower_x.lower(), "cn_id")[1] == Counter(cn_id=1)
    assert scrub(f"ID {WRONG_CHECK}", "cn_id") == (f"ID {WRONG_CHECK}", Counter())
    bad_date = "11010519490231001"  # 31 February
    bad_date += gb11643_check(bad_date)
    assert scrub(bad_date, "cn_id") == (bad_date, Counter())


def test_valid_id_is_taken_before_card_numbers():
    # A Changsha (430102) ID starts like a Visa card; find one that also passes Luhn.
    ids = (f"43010219900101{i:03d}" for i in range(1000))
    number = next(n for n in (f + gb11643_check(f) for f in ids) if n.isdigit() and luhn_ok(n))
    assert scrub(f"证件{number}") == ("证件<CN_ID>", Counter(cn_id=1))
    assert scrub(f"证件{number}", "credit_card", "phone") == (
        "证件<CREDIT_CARD>",
        Counter(credit_card=1),
    )


def test_types_filter_is_respected():
    text = f"mail a@b.com call 13812345678 id {VALID_ID} ip 8.8.8.8"
    out, counts = scrub(text, "email", "ipv4")
    assert out == f"mail <EMAIL> call 13812345678 id {VALID_ID} ip <IP>"
    assert counts == Counter(email=1, ipv4=1)
    assert scrub_pii(text, []) == (text, Counter())


def test_mixed_document_counts_each_type():
    text = (
        f"Contact jane@example.org or +1 (415) 555-0123 from 203.0.113.9; "
        f"card 4111-1111-1111-1111; 身份证{VALID_ID}; 手机13912345678。"
    )
    out, counts = scrub(text)
    assert out == (
        "Contact <EMAIL> or <PHONE> from <IP>; card <CREDIT_CARD>; 身份证<CN_ID>; 手机<PHONE>。"
    )
    assert counts == Counter(email=1, phone=2, ipv4=1, credit_card=1, cn_id=1)


def test_text_without_pii_is_unchanged():
    text = "The quick brown fox jumps over the lazy dog. 今天天气很好。"
    assert scrub(text) == (text, Counter())


def test_unknown_type_is_rejected():
    with pytest.raises(ValueError, match="unknown PII type"):
        scrub_pii("x", ["ssn"])
