"""``python -m batchlab`` is ``batchlab``."""

import sys

from .cli import main

sys.exit(main())
