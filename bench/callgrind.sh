#!/usr/bin/env bash
# Instructions per message of `cartero serve`, counted by callgrind: repeatable where timings
# are not (valgrind counts instructions, whatever else the machine is doing), so two builds can
# be compared on a noisy host in one pair of runs.
#
#   bench/callgrind.sh [CARTERO_BINARY] [MESSAGES] [CONCURRENCY]   (target/release/cartero, 3000, 1)
#
# It runs `cartero bench` twice, with MESSAGES and with a third of them, the server under
# callgrind, and divides the difference by the difference in messages: what the server does
# once (start-up, the idle-server check) cancels out. Then it lists the functions that executed
# the most instructions in the larger run.
#
# One sender by default: with more, how many messages a commit groups and how many go through a
# claim depend on timing (under valgrind the server runs one thread at a time, ~30x slower), and
# the counts move with them (one build, 32 senders: 395,000-406,000 per message over three runs;
# one sender: 419,000-433,000 over seven). With one sender every message has a commit of its own, so compare builds with it, not
# with the figures of a real round. CALLGRIND_OUT=FILE keeps the larger run's profile.
set -euo pipefail

bin=$(realpath "${1:-target/release/cartero}")
n=${2:-3000}
small=$((n / 3))
c=${3:-1}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# `cartero bench --server` runs this for every command; only `serve` goes under callgrind.
cat >"$work/serve.sh" <<EOF
#!/usr/bin/env bash
for a in "\$@"; do
  if [ "\$a" = serve ]; then
    exec valgrind --tool=callgrind --callgrind-out-file=$work/callgrind.%p -q "$bin" "\$@"
  fi
done
exec "$bin" "\$@"
EOF
chmod +x "$work/serve.sh"

# Total instructions of the server for a round of $1 messages.
instructions() {
  rm -f "$work"/callgrind.*
  CARTERO_CONNECTIONS_PER_ACCOUNT=16 "$bin" bench --server "$work/serve.sh" --runs 1 --rate 0 \
    --no-postfix --messages "$1" --concurrency "$c" --out "$work/bench.json" >"$work/bench.log" 2>&1 \
    || { cat "$work/bench.log" >&2; exit 1; }
  local file
  file=$(ls "$work"/callgrind.*)
  callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
  cp "$file" "$work/last.out"
}

echo "callgrind: $bin, $small then $n messages…" >&2
few=$(instructions "$small")
many=$(instructions "$n")
echo "server instructions: $few for $small messages, $many for $n"
echo "per message: $(( (many - few) / (n - small) ))"
echo
if [ -n "${CALLGRIND_OUT:-}" ]; then cp "$work/last.out" "$CALLGRIND_OUT"; fi
echo "functions by instructions executed (the $n-message run; CALLGRIND_OUT=FILE keeps its profile):"
callgrind_annotate "$work/last.out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' \
  | head -25 | cut -c1-160
