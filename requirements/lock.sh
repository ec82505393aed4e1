#!/usr/bin/env bash
# Writes the hashed lock files again (`make lock`): lock.txt from pyproject.toml with the dev extra (make venv),
# runtime.txt without it (the image), pip.txt from pip.in, no-deps.txt from no-deps.in. Run it on Linux x86_64 with CPython 3.11, the platform the lock is for, where
# pip reaches the package index (and this project's machines' local torch wheels, through pip's own configuration).
# pip-tools lives in a throw-away venv, never in the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
tools=${LOCK_TOOLS:-.landmarks/lock-tools}
test -x "$tools/bin/pip-compile" || { "$PY" -m venv "$tools" && "$tools/bin/pip" install -q pip-tools==7.6.2; }
compile=("$tools/bin/pip-compile" -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
  --no-emit-find-links)
"${compile[@]}" --extra dev --output-file requirements/lock.txt pyproject.toml
# The image's lock: the runtime dependencies alone, seeded with lock.txt so every version and hash is the same.
cp requirements/lock.txt requirements/runtime.txt
"${compile[@]}" --output-file requirements/runtime.txt pyproject.toml
"${compile[@]}" --output-file requirements/pip.txt requirements/pip.in

downloads=$(mktemp -d)
trap 'rm -rf "$downloads"' EXIT
{
  grep '^#' requirements/no-deps.in
  grep -v '^#' requirements/no-deps.in | grep . | while read -r pin; do
    rm -f "$downloads"/*
    "$tools/bin/pip" download -q --no-deps -d "$downloads" "$pin"
    "$tools/bin/pip" download -q --no-deps --no-binary :all: -d "$downloads" "$pin" || true  # no sdist: wheel only
    printf '%s' "$pin"
    for file in "$downloads"/*; do printf ' \\\n    %s' "$("$tools/bin/pip" hash "$file" | tail -1)"; done
    printf '\n'
  done
} > requirements/no-deps.txt.new
mv requirements/no-deps.txt.new requirements/no-deps.txt
