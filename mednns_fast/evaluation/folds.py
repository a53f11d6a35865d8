"""Running the folds of a study, in worker processes when asked (shared by `lodo` and `study`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from tqdm.auto import tqdm


def run_folds(job: Callable[[object], dict], units: Sequence, workers: int, done: dict, key: Callable[[dict], str],
              on_fold: Callable[[dict], None] | None = None, total: int | None = None, progress: bool = False) -> None:
    """job(unit) for every unit, in `workers` forked processes when > 1 (job must pickle, e.g. a
    functools.partial of a module-level function). As each finishes, in this process: done[key(fold)] = fold,
    on_fold(fold) (to persist it), and a progress bar over `total` folds (default: the units) advances."""
    total = len(units) if total is None else total
    bar = tqdm(total=total, initial=total - len(units), desc="folds", disable=not progress)

    def finished(fold: dict) -> None:
        done[key(fold)] = fold
        if on_fold is not None:
            on_fold(fold)
        bar.update(1)

    if workers > 1 and len(units) > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            for future in as_completed([pool.submit(job, u) for u in units]):
                finished(future.result())
    else:
        for unit in units:
            finished(job(unit))
    bar.close()
