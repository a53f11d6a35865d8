"""Former name of `mednns_fast.iac` (the IAC / IAC-LTH cell search), kept so `mf.search.*` still works."""

from .iac import *  # noqa: F403
from .iac import __all__  # noqa: F401
