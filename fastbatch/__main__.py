"""``python -m fastbatch``: the seed's demo (``--steps`` prints every step's line).

Any other arguments are the ``fastbatch`` command's: ``python -m fastbatch --help`` lists them.
"""
import sys

from .cli import main

args = sys.argv[1:]
if not args or args == ["--steps"]:
    args = ["demo", *args]  # (through the command's error handling: `python -m fastbatch --steps | head`)
sys.exit(main(args))
