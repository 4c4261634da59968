"""`python -m searcher` is `python -m searcher.run`."""
import sys

from searcher.commands.run import main

sys.exit(main())
