"""Experiments: the full studies behind BENCHMARKS.md, runnable as `python -m mednns_fast.experiments.NAME` and
called by the `mednns-fast` command."""
