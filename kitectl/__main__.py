"""``python -m kitectl``: the same entry point as the kitectl console script."""

from kitectl.main import main

main()
