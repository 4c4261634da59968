#!/usr/bin/env bash
# The AWS head's two secrets, from Secrets Manager into the files the node scripts read, mode 600:
#   searcher/pgpass       -> ~/.pgpass (one libpq line: HOST:5432:*:searcher:PASSWORD)
#   searcher/mlflow-admin -> ~/.searcher/mlflow-admin-password (read by start-mlflow.sh)
# Read with the head's instance role (cluster/aws/head-policy.json); nothing lands in a log.
# Usage: head-secrets.sh REGION (the provider's region in cluster.yaml).
set -euo pipefail
region=${1:?usage: head-secrets.sh REGION}
source "${SEARCHER_ENV:-$HOME/searcher-env}/bin/activate"
umask 077
mkdir -p "$HOME/.searcher"
python - "$region" <<'PY'
import os
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

client = boto3.client("secretsmanager", region_name=sys.argv[1])
home = Path.home()
for secret, path in (("searcher/pgpass", home / ".pgpass"),
                     ("searcher/mlflow-admin", home / ".searcher" / "mlflow-admin-password")):
    try:
        value = client.get_secret_value(SecretId=secret)["SecretString"].strip()
    except (BotoCoreError, ClientError) as e:
        sys.exit(f"head-secrets: cannot read secret {secret} in {sys.argv[1]} ({e}); create it "
                 f"and give the head's role GetSecretValue on it (docs/cluster.md)")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(value + "\n")
    os.chmod(partial, 0o600)
    partial.replace(path)  # whole or not at all
PY
echo "head-secrets: ~/.pgpass and ~/.searcher/mlflow-admin-password written"
