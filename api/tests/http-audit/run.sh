#!/usr/bin/env bash
# GraphQL-over-HTTP conformance audit (graphql-http's auditServer) of the real
# API binary on a fresh SQLite database, with an ADMIN API key and with a
# customer token. Exits with the audit's status (0: every MUST and SHOULD
# audit passes). See audit.mjs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/credits-target}"

echo "http-audit: npm ci"
(cd "$here" && npm ci --silent --no-audit --no-fund)

echo "http-audit: cargo build -p api"
(cd "$root" && cargo build --quiet --locked -p api)

tmp="$(mktemp -d "${TMPDIR:-/tmp}/http-audit.XXXXXX")"
server_pid=""
cleanup() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# `cargo run` execs the binary, so $! is the server itself. The audit sends
# many requests per credential at once: rate limits off (tests/throttling.rs
# checks them).
(cd "$root" && exec env \
  DATABASE_URL="sqlite://$tmp/audit.db?mode=rwc" \
  LISTEN_ADDR=127.0.0.1:0 \
  RATE_LIMIT_API_KEY=off RATE_LIMIT_CUSTOMER_TOKEN=off \
  RUST_LOG="${RUST_LOG:-warn}" \
  cargo run --quiet --locked -p api -- serve) >"$tmp/stdout" 2>"$tmp/stderr" &
server_pid=$!

# On an empty database the server prints the ADMIN key and the GraphiQL URL
# (which carries the port it bound).
key="" base=""
for _ in $(seq 1 300); do
  key="$(awk '/^Created tenant/ { found = 1; next } found && NF { print $1; exit }' "$tmp/stdout")"
  base="$(sed -n 's|^GraphiQL: \(http://[^ ]*\)/graphql$|\1|p' "$tmp/stdout" | head -n 1)"
  [ -n "$key" ] && [ -n "$base" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "http-audit: the server exited before it was ready" >&2
    cat "$tmp/stdout" "$tmp/stderr" >&2
    exit 2
  fi
  sleep 0.1
done
if [ -z "$key" ] || [ -z "$base" ]; then
  echo "http-audit: no ADMIN key / URL on the server's stdout after 30s" >&2
  cat "$tmp/stdout" "$tmp/stderr" >&2
  exit 2
fi

for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "$base/healthz"

echo "http-audit: auditing $base/graphql"
status=0
(cd "$here" && node audit.mjs "$base" "$key") || status=$?
if [ "$status" -ne 0 ] && [ -s "$tmp/stderr" ]; then
  echo "http-audit: server log (stderr, last 20 lines):" >&2
  tail -n 20 "$tmp/stderr" >&2
fi
exit "$status"
