"""``python -m streamer ...``: the same command line as ``streamer`` and ``python run.py``."""

import sys

if __name__ == "__main__":
    try:
        # As in run.py: a Ctrl-C while OpenCV and numpy import is a user stop (exit 0, one line).
        from .cli import main
    except KeyboardInterrupt:
        sys.stderr.write("streamer: WARNING: interrupted\n")
        sys.exit(0)
    sys.exit(main(prog="python -m streamer"))
