"""``python -m fastbatch``: the seed's demo (``--steps`` prints every step's line).

Any other arguments are the ``fastbatch`` command's: ``python -m fastbatch --help`` lists them.
"""
import sys

args = sys.argv[1:]
if not args or args == ["--steps"]:
    from .demo import main
    sys.exit(main(show_every_step=bool(args)))
from .cli import main
sys.exit(main(args))
