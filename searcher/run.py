"""`python -m searcher.run`: the same command as `searcher run` (searcher.commands.run)."""
import sys

from searcher.commands.run import main

if __name__ == "__main__":
    sys.exit(main())
