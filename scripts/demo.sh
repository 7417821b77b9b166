#!/usr/bin/env bash
# `npm run demo`: from a fresh clone to the demo having run. Installs the npm dependencies
# when missing or older than the lock file (as scripts/test.sh does) and OpenSSH (server
# and client: the VMs serve ssh, the user logs in with it) when missing — through apt, as
# root — then runs `trustlaunch demo`, which exits 0 only if every step went as told.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

missing=()
for tool in /usr/sbin/sshd ssh ssh-keygen ssh-keyscan; do
  if [[ "$tool" == /* ]]; then [ -e "$tool" ] || missing+=("$tool"); else command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "demo: OpenSSH is missing (${missing[*]}); installing openssh-server and openssh-client" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "demo: not root; install them with: sudo apt-get install -y openssh-server openssh-client" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server openssh-client
fi

exec node bin/trustlaunch.js demo "$@"
