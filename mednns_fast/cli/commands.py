"""What each `mednns-fast` pipeline subcommand runs: resolve its config, call the library, write what it returns
into the run directory (metrics JSON, figures, checkpoints). Every step that finished leaves its metrics file,
so rerunning a command (or `demo`) after an interruption resumes where it stopped: finished steps are read back,
interrupted ones resume from their own checkpoints (supernet epochs, zoo records, meta-space steps, search
epochs). One module per command group; this one is the table the runner dispatches on.
"""

from __future__ import annotations

from .demo import bench, demo, report
from .errors import CommandError, UsageError
from .iac import iac_search, prepare_iac_search
from .metaspace import finetune, metaspace_train, query
from .settings import DEFAULTS, DEMO, defaults
from .user_data import prepare as prepare_user_data
from .zoo import supernet_train, zoo_build

__all__ = ["COMMANDS", "DEFAULTS", "DEMO", "PREPARE", "CommandError", "UsageError", "defaults"]

COMMANDS = {
    "supernet train": supernet_train,
    "zoo build": zoo_build,
    "metaspace train": metaspace_train,
    "query": query,
    "finetune": finetune,
    "iac search": iac_search,
    "bench": bench,
    "report": report,
    "demo": demo,
}

# Run before the run directory is made, `prepare(config, run_dir) -> extra keyword arguments of the command`:
# reads and checks the user's data, so that bad files stop the command with nothing written.
PREPARE = {
    "iac search": prepare_iac_search,
    # the user's classification data (--data PATH): loaded and checked here, registered in the run by the command
    **{name: prepare_user_data(name) for name in ("supernet train", "zoo build", "query", "finetune", "demo")},
}
