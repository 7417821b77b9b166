#!/usr/bin/env bash
# The whole test suite, from a fresh clone: npm dependencies, the Debian packages and
# services the tests need, type-check, lint, every test. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# npm dependencies: install when missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# System packages (as root through apt, only when missing) and PostgreSQL.
# shellcheck source=scripts/setup-system.sh
source scripts/setup-system.sh

# The QEMU guest image (kernel + initramfs from Debian packages); a no-op when up to date.
scripts/build-guest.sh

npm run --silent typecheck
npm run --silent lint
scripts/run-tests.sh "$@"
