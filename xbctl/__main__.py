"""python -m xbctl."""

from .cli import main

main()
