"""Tracking: one account per person on a tracking server with MLflow's basic-auth app.

An admin adds users (`searcher users`); every user reads every search (the server's
`default_permission = READ`), and MLflow makes whoever creates a registered model or an
experiment its owner (MANAGE): only the owner, or an admin, moves a model's alias or deletes its
versions. A user who promotes another's search logs the promotion in an experiment of their own
(`own_experiment`), since runs are added only to experiments one may edit.
"""
from __future__ import annotations

import re
from typing import Any

from searcher.errors import UserError
from searcher.redaction import redact

# A name that MLflow's client puts in a basic-auth header and a credentials file unchanged: no
# colon (the header's separator), no spaces or `%` (ConfigParser's interpolation).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12  # MLflow's own minimum; refused here before anything is sent


def _auth() -> Any:
    """mlflow.server.auth's client module, imported without the deprecation warning its server
    package prints on import (the client needs none of the server)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"starlette\.middleware\.wsgi is deprecated")
        from mlflow.server.auth import client
    return client


def refused(exc: BaseException) -> bool:
    """Whether `exc` is the server's 403: the user may not do this to another's resource."""
    return getattr(exc, "error_code", None) == "PERMISSION_DENIED"


def _server(uri: str) -> str:
    if not uri.startswith(("http://", "https://")):
        raise UserError(f"users live on a tracking server, not in the local store {redact(uri)}: "
                        f"set MLFLOW_TRACKING_URI (or --tracking-uri) to the server, e.g. "
                        f"http://127.0.0.1:5000 through the cluster's SSH forward")
    return uri


def _call(uri: str, what: str, call: Any, known: dict[str, str] | None = None) -> Any:
    """`call()` on the server's auth app, its refusals as one line each; `known`: the line for
    an error code the caller expects (a user that exists, or does not)."""
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except MlflowException as exc:
        code, where = getattr(exc, "error_code", None), redact(uri)
        if code in (known or {}):
            raise UserError(known[code]) from None
        if code == "UNAUTHENTICATED":
            raise UserError(f"{where} refused the credentials (MLflow answered 401 "
                            f"UNAUTHENTICATED): set the admin's in MLFLOW_TRACKING_USERNAME and "
                            f"MLFLOW_TRACKING_PASSWORD, or in ~/.mlflow/credentials") from None
        if refused(exc):
            raise UserError(f"cannot {what}: the user these credentials name is not an admin of "
                            f"{where} (MLflow answered 403 PERMISSION_DENIED); run it with the "
                            f"admin's credentials") from None
        if code == "ENDPOINT_NOT_FOUND" or " 404 " in str(exc):
            raise UserError(f"{where} has no user accounts: it runs without MLflow's basic-auth "
                            f"app (start it with `mlflow server --app-name basic-auth`, as "
                            f"cluster/start-mlflow.sh does)") from None
        text = str(exc).split(". Error:")[0].strip().splitlines()
        raise UserError(f"cannot {what} on {where}: {text[0] if text else code}") from None


def _client(uri: str | None) -> tuple[Any, str]:
    from searcher.tracking import store

    uri = _server(store.resolve_tracking_uri(uri))
    store.check_server(uri)  # an unreachable server: one line, at once, not minutes of retries
    return _auth().AuthServiceClient(uri), uri


def add_user(uri: str | None, name: str, password: str) -> str:
    """Create the user `name` with `password` on the server at `uri` (an admin's call); returns
    the server's URI."""
    if not NAME.fullmatch(name):
        raise UserError(f"user name {name[:40]!r}: use letters, digits and . _ @ - (up to 64, "
                        f"starting with a letter or digit)")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must be at least {MIN_PASSWORD} characters")
    auth, uri = _client(uri)
    _call(uri, f"add the user {name}", lambda: auth.create_user(name, password),
          {"RESOURCE_ALREADY_EXISTS": f"the user {name} already exists on {redact(uri)}; choose "
                                      f"another name, or `searcher users remove {name}` first"})
    return uri


def remove_user(uri: str | None, name: str) -> str:
    """Delete the user `name` (an admin's call); what they made stays, for admins to change."""
    auth, uri = _client(uri)
    _call(uri, f"remove the user {name}", lambda: auth.delete_user(name),
          {"RESOURCE_DOES_NOT_EXIST": f"there is no user {name} on {redact(uri)}"})
    return uri


def list_users(uri: str | None) -> list[tuple[str, bool]]:
    """(name, is_admin) of every user of the server at `uri`, by name."""
    auth, uri = _client(uri)
    from mlflow.server.auth.routes import LIST_USERS
    found = _call(uri, "list the users", lambda: auth._request(LIST_USERS, "GET"))
    return sorted((u["username"], bool(u.get("is_admin"))) for u in found.get("users", []))


def credentials_file(name: str, password: str) -> str:
    """What the user `name` puts in their own ~/.mlflow/credentials. MLflow reads it with
    ConfigParser, where `%` starts an interpolation: it is written `%%`."""
    return (f"[mlflow]\nmlflow_tracking_username = {name}\n"
            f"mlflow_tracking_password = {password.replace('%', '%%')}\n")


def _me(client: Any) -> dict[str, Any] | None:
    """The server's record of this client's user (username, is_admin); None where it has no
    accounts."""
    from mlflow.exceptions import MlflowException

    if not client.tracking_uri.startswith(("http://", "https://")):
        return None
    auth = _auth().AuthServiceClient(client.tracking_uri)
    from mlflow.server.auth.routes import GET_CURRENT_USER
    try:
        return auth._request(GET_CURRENT_USER, "GET").get("user") or None
    except MlflowException:  # a server without the auth app
        return None


def current_user(client: Any) -> str | None:
    """The name the server knows this client's credentials by; None where it has no accounts."""
    me = _me(client)
    return me and me.get("username")


def check_may_update_model(client: Any, name: str) -> None:
    """A one-line UserError, before anything is logged, where the registered model `name`
    exists and this user may not add versions to it or move its aliases (another's model)."""
    from mlflow.exceptions import MlflowException

    me = _me(client)  # imports mlflow.server.auth (_auth) where there is a server
    if me is None or me.get("is_admin"):  # an admin's grants say READ, yet it may do anything
        return
    user = me["username"]
    from mlflow.server.auth.permissions import get_permission
    try:
        client.get_registered_model(name)
    except MlflowException:  # none yet: this user makes it, and owns it
        return
    try:
        found = _auth().AuthServiceClient(client.tracking_uri).get_user_permission(
            user, "registered_model", name)
        allowed = get_permission(found.permission).can_update
    except MlflowException:  # an older auth app: the registry's own 403 says it (model_refused)
        return
    if not allowed:
        raise UserError(model_refused(name, found.permission))


def model_refused(name: str, permission: str | None = None) -> str:
    """The one line for a user refused a write to another's registered model `name`."""
    held = f"; you hold {permission} on it" if permission else ""
    return (f"models:/{name} belongs to another user (MLflow answered 403 PERMISSION_DENIED"
            f"{held}): promote under a model name of your own with --model-name, or ask its "
            f"owner or an admin")


def own_experiment(client: Any, experiment_id: str) -> str:
    """The id of the experiment where this user logs what they add to another's search in
    `experiment_id` (which they may only read): "<its name> by <user>", made if missing, and
    theirs. A UserError where the server refuses that too."""
    from mlflow.exceptions import MlflowException

    user = current_user(client) or "you"
    name = f"{client.get_experiment(experiment_id).name} by {user}"
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as exc:
        if refused(exc):
            raise UserError(f"the user {user} may neither add runs to experiment {experiment_id} "
                            f"nor create an experiment (MLflow answered 403 PERMISSION_DENIED); "
                            f"ask an admin") from None
        raise
