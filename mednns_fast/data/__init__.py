"""Data: the MedMNIST `.npz` reader and the built-in suite of tasks derived from real images shipped in packages.

Nothing here downloads. `load_medmnist` reads files the user already has; `builtin_suite` builds tasks from
images inside installed PyPI/Debian packages (docs/data.md), caches them as MedMNIST-format `.npz`, and
skips (with a one-line notice naming the package) any task whose source is not installed. `load_task` takes
your own data (a MedMNIST `.npz`, a folder of class folders, a task your code builds; docs/own_data.md).
"""

from .datasets import Augment, MedMNISTDataset, make_loaders, standard_augment
from .medmnist import KNOWN_SETS, MedMNISTSplit, load_medmnist, medmnist_filename
from .sources import SourceMissing
from .suite import BuiltTask, Task, TaskCard, build_task, builtin_suite, describe, task_names
from .user import DataError, UserTask, load_task, task_from_arrays
from .user_segmentation import SegDataError, SegFolder, load_segmentation_folder

__all__ = [
    "Augment",
    "MedMNISTDataset",
    "make_loaders",
    "standard_augment",
    "KNOWN_SETS",
    "BuiltTask",
    "DataError",
    "MedMNISTSplit",
    "SourceMissing",
    "Task",
    "TaskCard",
    "build_task",
    "builtin_suite",
    "describe",
    "load_medmnist",
    "load_segmentation_folder",
    "SegDataError",
    "SegFolder",
    "medmnist_filename",
    "load_task",
    "task_from_arrays",
    "task_names",
    "UserTask",
]
