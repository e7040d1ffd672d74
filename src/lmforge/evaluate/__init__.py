"""Offline evaluation metrics for the finetune/evaluate stages.

Everything here runs without network access (no `evaluate.load`), and text metrics treat
Chinese as first-class: see `lmforge.evaluate.metrics`.
"""
