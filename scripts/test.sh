#!/usr/bin/env bash
# The README's test command: install and start the test peers, run every Rust test with
# missing peers counted as failures (CARTERO_REQUIRE_PEERS=1), then the web admin's
# end-to-end tests in headless Chromium (tests/e2e/admin.mjs; screenshots in
# tests/e2e/artifacts/).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh accounts`) and skip the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! scripts/peers.sh; then
  echo "scripts/peers.sh failed: the peers above are missing (it needs root for apt-get)." >&2
  echo "Run plain 'cargo test' to skip the tests that need them." >&2
  exit 1
fi

export CARTERO_REQUIRE_PEERS="${CARTERO_REQUIRE_PEERS:-1}"
cargo test --all-targets "$@"
if [ "$#" -eq 0 ]; then
  echo "== web admin in headless Chromium (tests/e2e/admin.mjs)"
  # `cargo test` built the debug binary the browser tests drive.
  node tests/e2e/admin.mjs
fi
