# Shared set-up for scripts/test and scripts/demo (sourced, not run).
# Creates .venv, installs sshkit with its test extra, and installs the Debian
# packages the tests need when running as root and they are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_debs=()
# nc and socat: bench/relay's floors (one TCP connection; one TCP hop between ssh and sshd).
for pair in ssh:openssh-client sshd:openssh-server dropbear:dropbear-bin puttygen:putty-tools nc:netcat-openbsd openssl:openssl socat:socat; do
  cmd="${pair%%:*}"; pkg="${pair#*:}"
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    need_debs+=("$pkg")
  fi
done
if [ "${#need_debs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian packages: ${need_debs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_debs[@]}" >/dev/null
  else
    echo "==> note: missing ${need_debs[*]} (not root); tests that need them will be skipped" >&2
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.sshkit-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing sshkit and its test extra"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
