"""The tokenizer stage: train BPE / WordPiece / Unigram tokenizers with Hugging Face ``tokenizers``."""
