"""`python -m mednns_fast`: the `mednns-fast` command."""

import sys

from .cli import main

sys.exit(main())
