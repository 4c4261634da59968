"""`python -m searcher.promote`: the same command as `searcher promote` (searcher.commands.promote)."""
import sys

from searcher.commands.promote import main

if __name__ == "__main__":
    sys.exit(main())
