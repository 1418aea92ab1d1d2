"""``python -m semiseg_sdk.continual init|run|status|history|promote|rollback ...``: the same as ``semiseg continual``."""
import sys

from ..cli import main

main(["continual", *sys.argv[1:]])
