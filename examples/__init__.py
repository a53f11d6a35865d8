"""Runnable examples (run from the repository root: `python -m examples.drop_in_darts`)."""
