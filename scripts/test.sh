#!/usr/bin/env bash
# Runs the whole tokengate test suite on a fresh machine: installs what the
# tests need (redis-server, curl, python3, chromium + chromedriver), checks
# formatting and lints, then runs every unit and integration test (the web
# UI's browser tests included: they may not skip here). This is the README's
# test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test
# install-deps has just made sure Chromium and chromedriver are there: the
# web UI's browser tests must run, never skip (tests/it/web_ui_browser.rs).
export TOKENGATE_REQUIRE_BROWSER=1

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast
else
    cargo test --locked --no-fail-fast
fi
