"""Running the folds of a study, in worker processes when asked (shared by `lodo` and `study`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context


def run_folds(job: Callable[[object], dict], units: Sequence, workers: int, on_done: Callable[[dict], None]) -> None:
    """job(unit) for every unit, in `workers` forked processes when > 1 (job must pickle, e.g. a
    functools.partial of a module-level function); on_done(result) in this process as each finishes."""
    if workers > 1 and len(units) > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            for future in as_completed([pool.submit(job, u) for u in units]):
                on_done(future.result())
    else:
        for unit in units:
            on_done(job(unit))
