"""`searcher users`: one account per person on the tracking server (MLflow's basic-auth app).

Run by an admin, against $MLFLOW_TRACKING_URI, with the admin's credentials from their own MLflow
config (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or ~/.mlflow/credentials). `add
NAME` creates the user with a password typed at a prompt (--prompt), read from the first line of
standard input (--password-stdin), or else generated; never from the command line, where `ps`
shows it. It prints, once, the lines the new user puts in their own ~/.mlflow/credentials. Every
user reads every search; a model belongs to whoever registered it first, and only its owner or
an admin moves its aliases or deletes its versions.
"""
from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from searcher.errors import UserError, one_line_errors

PROG = "searcher users"


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1],
                                epilog="Example: MLFLOW_TRACKING_URI=http://127.0.0.1:5000 "
                                       f"{prog} add alice")
    server = argparse.ArgumentParser(add_help=False)  # given before or after the action
    server.add_argument("--tracking-uri", default=argparse.SUPPRESS,
                        help="the MLflow tracking server; default $MLFLOW_TRACKING_URI")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", parents=[server],
                             help="create a user and print their credentials file")
    add.add_argument("name", help="the user's name (letters, digits and . _ @ -)")
    given = add.add_mutually_exclusive_group()
    given.add_argument("--prompt", action="store_true",
                       help="type the password at a prompt (asked twice) instead of generating it")
    given.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    actions.add_parser("list", parents=[server], help="the server's users, admins marked")
    remove = actions.add_parser("remove", parents=[server],
                                help="delete a user (what they made stays)")
    remove.add_argument("name")
    args = p.parse_args(argv)
    args.tracking_uri = getattr(args, "tracking_uri", None)
    return args


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new user's password, and whether it was generated here (and so must be shown)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if args.prompt:
        first = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != first:
            raise UserError("the two passwords differ; nothing was created")
        return first, False
    return secrets.token_urlsafe(18), True  # 24 characters, 144 random bits


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        from searcher.redaction import redact
        from searcher.tracking import accounts

        if args.action == "list":
            for name, admin in accounts.list_users(args.tracking_uri):
                print(f"{name}{'  (admin)' if admin else ''}")
        elif args.action == "remove":
            uri = accounts.remove_user(args.tracking_uri, args.name)
            print(f"Removed the user {args.name} from {redact(uri)}")
        else:
            password, generated = _password(args)
            uri = accounts.add_user(args.tracking_uri, args.name, password)
            print(f"Added the user {args.name} to {redact(uri)}. They put these lines in their own "
                  f"~/.mlflow/credentials (chmod 600)"
                  + (", the only place this password is shown:" if generated else ":"))
            print(accounts.credentials_file(args.name, password), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
