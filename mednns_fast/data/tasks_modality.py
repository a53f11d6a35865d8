"""Placeholder; tasks are added one source at a time."""

CLASSIFICATION: list = []
SEGMENTATION: list = []
