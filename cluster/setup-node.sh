#!/usr/bin/env bash
# One node set-up for every cluster config (cluster.yaml, cluster-onprem.yaml): a Python >= 3.11
# environment with cluster/requirements.txt, activated for every login shell, Ray's token
# authentication on. Idempotent: a node whose environment already holds these requirements
# (a restarted cached node, a baked image) installs nothing.
# Settings (environment): SEARCHER_PYTHON, the interpreter to build from (default python3);
# SEARCHER_ENV, where the environment lives (default ~/searcher-env).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
requirements=$here/requirements.txt
env_dir=${SEARCHER_ENV:-$HOME/searcher-env}
python=${SEARCHER_PYTHON:-python3}
stamp=$HOME/.searcher/node-requirements.sha256

die() { echo "setup-node: $*" >&2; exit 1; }

if [ ! -x "$env_dir/bin/python" ]; then
  command -v "$python" >/dev/null || die "no $python on this node: install Python 3.11+ or set SEARCHER_PYTHON"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is Python $("$python" -c 'import platform; print(platform.python_version())'); searcher needs 3.11+: use an image with it or set SEARCHER_PYTHON"
  if ! "$python" -m venv "$env_dir" 2>/dev/null; then
    # Debian and Ubuntu ship venv's ensurepip separately.
    rm -rf "$env_dir"
    minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    sudo -n apt-get install -y -q "python$minor-venv" >/dev/null \
      || die "$python cannot make a virtual environment: install python$minor-venv"
    "$python" -m venv "$env_dir"
  fi
fi
"$env_dir/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$env_dir holds Python < 3.11: remove it, then run this again"

want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup-node: installing cluster/requirements.txt into $env_dir"
  "$env_dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  mkdir -p "$(dirname "$stamp")"
  echo "$want" > "$stamp"
fi

# Login shells (the ones `ray up`, `ray attach` and the autoscaler run commands in) use the
# environment and Ray's token authentication.
line="source $env_dir/bin/activate; export RAY_AUTH_MODE=token"
grep -qxF "$line" "$HOME/.bashrc" 2>/dev/null || echo "$line" >> "$HOME/.bashrc"
echo "setup-node: $("$env_dir/bin/python" -c 'import platform, ray; print(f"Python {platform.python_version()}, Ray {ray.__version__}")') in $env_dir"
