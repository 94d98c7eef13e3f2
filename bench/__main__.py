"""python -m bench: the paths compared (bench.scenarios.paths)."""

import sys

from bench.scenarios.paths import main

sys.exit(main())
