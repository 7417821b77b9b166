#!/usr/bin/env bash
# Runs the test files (all of them, or those whose path contains one of the arguments).
# Node 20's test runner does not expand globs, so the list is explicit.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t all < <(find test -name '*.test.ts' -type f | sort)
files=()
if [ "$#" -eq 0 ]; then
  files=("${all[@]}")
else
  for f in "${all[@]}"; do
    for pat in "$@"; do
      if [[ "$f" == *"$pat"* ]]; then files+=("$f"); break; fi
    done
  done
fi
if [ "${#files[@]}" -eq 0 ]; then
  echo "run-tests: no test file matches: $*" >&2
  exit 1
fi
# esbuild's synchronous transforms (through tsx) otherwise wait on a worker thread with
# Atomics.wait, which on Node 20 can wait forever: a test process hung idle at start-up in
# CI. "0" selects esbuild's per-call synchronous path (bin/trustlaunch.js does the same).
export ESBUILD_WORKER_THREADS=0
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout="${TEST_TIMEOUT_MS:-900000}" "${files[@]}"
