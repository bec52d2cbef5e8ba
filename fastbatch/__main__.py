"""``python -m fastbatch``: the seed's demo (``--steps`` prints every step's line)."""
import sys

from .demo import main

sys.exit(main(show_every_step="--steps" in sys.argv[1:]))
