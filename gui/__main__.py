"""``python -m fastbatch_gui``: the app, as the ``fastbatch-gui`` command runs it (the same flags)."""
import sys

from .app import main

sys.exit(main())
