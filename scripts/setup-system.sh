#!/usr/bin/env bash
# Sourced by scripts/test.sh (and runnable alone): makes sure the Debian packages the
# suite needs are installed (as root, through apt, only when something is missing) and
# that a local PostgreSQL is running with a test role. A component that is still missing
# afterwards fails the run: nothing is ever silently skipped.
set -euo pipefail

# command-or-file  debian-package
required=(
  "tpm2_checkquote tpm2-tools"
  "swtpm swtpm"
  "swtpm_setup swtpm-tools"
  "qemu-system-x86_64 qemu-system-x86"
  "/usr/sbin/sshd openssh-server"
  "ssh openssh-client"
  "ssh-keygen openssh-client"
  "/bin/busybox busybox-static"
  "cpio cpio"
  "lz4 lz4"
  "openssl openssl"
  "ip iproute2"
  "/usr/lib/postgresql postgresql"
  "pg_ctlcluster postgresql-common"
)

have() { if [[ "$1" == /* ]]; then [ -e "$1" ]; else command -v "$1" >/dev/null 2>&1; fi; }

missing=()
for entry in "${required[@]}"; do
  read -r what pkg <<<"$entry"
  have "$what" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup-system: installing missing Debian packages: ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-system: not root; install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  for entry in "${required[@]}"; do
    read -r what pkg <<<"$entry"
    have "$what" || { echo "setup-system: $what (package $pkg) is still missing" >&2; exit 1; }
  done
fi

# PostgreSQL: the Debian cluster, started, with a role that may create databases.
pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$pg_version main"; then
  pg_createcluster "$pg_version" main >/dev/null
fi
if ! pg_lsclusters -h | grep -q "^$pg_version main .* online"; then
  pg_ctlcluster "$pg_version" main start
fi
pg_port=$(pg_lsclusters -h | awk -v v="$pg_version" '$1==v && $2=="main" {print $3}')
for _ in $(seq 1 50); do
  su postgres -c "psql -p $pg_port -tAc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
su postgres -c "psql -p $pg_port -v ON_ERROR_STOP=1 -tAc \"select 1 from pg_roles where rolname='trustlaunch'\"" | grep -q 1 ||
  su postgres -c "psql -p $pg_port -v ON_ERROR_STOP=1 -c \"create role trustlaunch login createdb password 'trustlaunch'\"" >/dev/null
export TRUSTLAUNCH_TEST_PG="postgres://trustlaunch:trustlaunch@127.0.0.1:$pg_port/postgres"
echo "setup-system: packages present; PostgreSQL $pg_version on 127.0.0.1:$pg_port" >&2
