"""The data stage: load, clean, scrub PII, deduplicate, split, write shards."""
