"""``python -m benchmarks.speed``: the benchmark, or (``--child KIND SPEC``) one of its
subprocesses."""

import sys

from benchmarks.speed.cli import main

sys.exit(main())
