"""`python -m searcher` is `python -m searcher.run`."""
import sys

from searcher.run import main

sys.exit(main())
