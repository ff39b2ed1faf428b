"""Start a real BMS-Flux server whose process exits when one chosen tool is called.

``python crash_on_call.py <module with `server`> <tool>``: every other tool works normally, so
a pipeline gets as far as that tool and then sees its server die mid-call.
"""

from __future__ import annotations

import importlib
import os
import sys


def main() -> None:
    module, tool = sys.argv[1], sys.argv[2]
    server = importlib.import_module(module).server
    real_call = server.call

    def call(name, arguments, progress=None):
        if name == tool:
            os._exit(9)  # the process dies mid-call, as a crash would
        return real_call(name, arguments, progress)

    server.call = call
    server.run_stdio()


if __name__ == "__main__":
    main()
