"""The ``dream-cl`` console script: a Ctrl-C while the libraries load (torch takes a second
or more) is one line, like a Ctrl-C at any later point, not a traceback through imports."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from dream_cl.cli import main as run_command
    except KeyboardInterrupt:
        sys.stderr.write(
            "error: interrupted by SIGINT while dream-cl was starting; nothing was done\n"
        )
        sys.exit(130)
    run_command()
