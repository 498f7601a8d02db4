#!/usr/bin/env bash
# The README's test command: install and start the test peers, then run every test with
# missing peers counted as failures (CARTERO_REQUIRE_PEERS=1).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh accounts`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! scripts/peers.sh; then
  echo "scripts/peers.sh failed: the peers above are missing (it needs root for apt-get)." >&2
  echo "Run plain 'cargo test' to skip the tests that need them." >&2
  exit 1
fi

export CARTERO_REQUIRE_PEERS="${CARTERO_REQUIRE_PEERS:-1}"
exec cargo test --all-targets "$@"
