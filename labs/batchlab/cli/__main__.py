"""``python -m batchlab.cli``: the same as ``batchlab``."""

import sys

from . import main

sys.exit(main())
