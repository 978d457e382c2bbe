"""``python -m benchmarks.adbench``."""

import sys

from benchmarks.adbench.cli import main

sys.exit(main())
