#!/usr/bin/env bash
# The console's customer page, first meaningful paint, against the RELEASE
# api binary on a fresh database (README "Performance"):
#
#   cargo build --release -p api
#   bench/console-paint.sh sqlite:///tmp/paint.db?mode=rwc
#   SECRETS_KEY=$(openssl rand -base64 32) bench/console-paint.sh postgres://postgres@127.0.0.1:5432/paint
#
# Starts the api on 127.0.0.1:$PORT (default 18100) over an EMPTY database
# (it prints its admin key), makes customer `big` with 3 credit systems ×
# 20 grants × 20 consumes through GraphQL, then runs
# api/tests/browser/paint.mjs (headless Chromium: first load after sign-in,
# then 7 reloads) and prints the figures in milliseconds. Needs node, the
# browser tests' `npm ci` and /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
DB="${1:?usage: bench/console-paint.sh DATABASE_URL}"
PORT="${PORT:-18100}"
API="${API_BIN:-${CARGO_TARGET_DIR:-target}/release/api}"
LOG="$(mktemp "${TMPDIR:-/tmp}/console-paint.XXXXXX")"
DATABASE_URL="$DB" LISTEN_ADDR="127.0.0.1:$PORT" METRICS_ADDR="127.0.0.1:$((PORT + 1))" "$API" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 1; done
KEY=$(grep -o 'ck_live_[A-Za-z0-9_]*' "$LOG" | head -1)
[ -n "$KEY" ] || { echo "no admin key printed: is the database empty?" >&2; cat "$LOG" >&2; exit 1; }
gql() {
  curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    "http://127.0.0.1:$PORT/graphql" \
    -d "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$1")" >/dev/null
}
gql 'mutation { createCustomer(input: {externalId: "big", name: "Big Studio"}) { customer { id } } }'
for s in photos videos prints; do
  ops="cs: createCreditSystem(input: {key: \"$s\", name: \"$s\", unitSingular: \"unit\", unitPlural: \"units\", precision: 0}) { creditSystem { id } }"
  for i in $(seq 0 19); do
    ops="$ops g$i: grantCredits(input: {customer: {externalId: \"big\"}, creditSystem: {key: \"$s\"}, amount: \"$((100 + i))\", category: PURCHASED, reason: \"batch $i\", idempotencyKey: \"$s-g$i\"}) { grant { id } }"
  done
  for i in $(seq 0 19); do
    ops="$ops c$i: consumeCredits(input: {customer: {externalId: \"big\"}, creditSystem: {key: \"$s\"}, amount: \"$((1 + i))\", idempotencyKey: \"$s-c$i\", description: \"job $i\"}) { entry { id } }"
  done
  gql "mutation { $ops }"
done
shots="$(mktemp -d "${TMPDIR:-/tmp}/console-paint-shots.XXXXXX")"
(cd api/tests/browser && node paint.mjs "http://127.0.0.1:$PORT" "$KEY" big "$shots") | python3 -c '
import json, sys
d = json.load(sys.stdin)
if d.get("failed"):
    sys.exit("paint.mjs failed: " + d["failed"])
p = sorted(d["paints"])
cold, runs = d["cold"], [round(x) for x in d["paints"]]
print(f"first load {cold:.0f} ms; reloads median {p[len(p) // 2]:.0f} ms, max {p[-1]:.0f} ms: {runs}")
'
