"""python -m bench.run MODULE [ARGS ...]: run a benchmark module with SIGTERM handled as Ctrl-C.

A benchmark starts its servers in sessions of their own, so a TERM that kills only its Python
(`timeout`'s, on the GPU host) would leave vLLM holding the GPU; as KeyboardInterrupt it unwinds
through the `finally` blocks that stop them.
"""

import runpy
import signal
import sys


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    module = sys.argv.pop(1)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
