from collections import Counter

from lmforge.data.split import assign_split, hash_fraction


def test_split_is_deterministic_and_close_to_the_fractions(en_texts):
    first = [assign_split(t, 0.1, 0.2) for t in en_texts]
    assert first == [assign_split(t, 0.1, 0.2) for t in en_texts]
    counts = Counter(assign_split(f"document {i}", 0.1, 0.2) for i in range(20_000))
    assert abs(counts["test"] / 20_000 - 0.2) < 0.01
    assert abs(counts["val"] / 20_000 - 0.1) < 0.01


def test_adding_documents_never_moves_existing_ones(en_texts):
    old = {t: assign_split(t, 0.05, 0.05) for t in en_texts[:100]}
    grown = en_texts[:100] + [f"new document {i}" for i in range(1000)]
    assert all(assign_split(t, 0.05, 0.05) == old[t] for t in grown[:100])


def test_hash_fraction_is_uniform_in_unit_interval():
    values = [hash_fraction(str(i)) for i in range(5000)]
    assert min(values) >= 0 and max(values) < 1
    assert abs(sum(values) / len(values) - 0.5) < 0.02
