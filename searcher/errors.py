"""User-facing errors: one line that says what is wrong and how to fix it, exit status 2."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

EXIT_USAGE = 2


class UserError(Exception):
    """A problem the user can fix (bad space file, missing data, unreachable server)."""


@contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Turn a UserError into `prog: error: ...` on stderr and exit status 2."""
    try:
        yield
    except UserError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the cause carried
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
