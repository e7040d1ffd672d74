"""Run-directory, logging, checkpoint and registry plumbing shared by every stage.

Nothing in ``core`` knows about any stage.
"""
