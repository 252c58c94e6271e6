"""``python -m streamer ...``: the same command line as ``streamer`` and ``python run.py``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m streamer"))
