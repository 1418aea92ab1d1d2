"""``python -m semiseg_sdk.continual init|run|status|history|promote|rollback ...``"""
from .cli import main

main()
