"""`searcher ui`: the MLflow UI on the tracking store the searches log to.

The store is found the way `searcher run` finds it: --tracking-uri, else $MLFLOW_TRACKING_URI,
else ./mlflow.db. A tracking server (http, https) serves its own UI: its address is printed instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from searcher.errors import UserError, one_line_errors

PROG = "searcher ui"


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("--tracking-uri", help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///mlflow.db in this folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000, help="the port (default 5000, MLflow's)")
    return p.parse_args(argv)


def ui_command(tracking_uri: str | None, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line serving the local store at `tracking_uri` (None: the
    default store)."""
    from searcher.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"no tracking store at {uri.removeprefix('sqlite:///')}: run a search "
                        f"here first (searcher run SPACE_FILE), or give --tracking-uri")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        from searcher.redaction import redact
        from searcher.tracking.store import resolve_tracking_uri

        uri = resolve_tracking_uri(args.tracking_uri)
        if uri.startswith(("http://", "https://")):
            print(f"{redact(uri)} is a tracking server with a UI of its own: open it in a browser")
            return 0
        command = ui_command(uri, args.host, args.port)
    print(f"[searcher] MLflow UI on {redact(uri)}: open http://{args.host}:{args.port} "
          f"(Ctrl-C stops it)", flush=True)
    # Replaced by MLflow's server rather than waiting on it: Ctrl-C reaches the server and its
    # workers as if it had been started by hand.
    os.execv(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
