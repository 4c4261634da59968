"""`python -m searcher`: the `searcher` command (searcher.commands.cli)."""
import sys

from searcher.commands.cli import main

sys.exit(main())
