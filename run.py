#!/usr/bin/env python3
"""Entry point: `python run.py --help`."""

import sys

if __name__ == "__main__":
    try:
        # Importing OpenCV and numpy takes a few tenths of a second: a Ctrl-C then is a user stop
        # like any other (exit 0, one line), not a traceback from inside an import.
        from streamer.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("streamer: WARNING: interrupted\n")
        sys.exit(0)
    sys.exit(main())
