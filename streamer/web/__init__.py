"""``streamer serve``: the command (``command.py``, importable without the web extra), the server
(``server.py``, cheroot), the Flask application (``app.py``), photo uploads (``photo.py``) and the
live view (``live.py``). Nothing is imported here, so that the command line works without Flask."""
