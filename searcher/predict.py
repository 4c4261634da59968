"""`python -m searcher.predict`: the same command as `searcher predict` (searcher.commands.predict)."""
import sys

from searcher.commands.predict import main

if __name__ == "__main__":
    sys.exit(main())
