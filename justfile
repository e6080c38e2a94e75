# Recipes for working on the credits engine. `just --list` shows them.
# Install just with `cargo install just` if you don't have it.

pg_url := env_var_or_default("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# Run the API with embedded SQLite and the worker in-process.
dev:
    cargo run -p api

# Run the worker on its own (production: API with WORKER=off).
worker:
    cargo run -p worker

# The whole test suite on SQLite.
test:
    cargo test --workspace

# The whole test suite on PostgreSQL (a fresh database per test).
test-pg:
    TEST_DATABASE_URL={{pg_url}} cargo test --workspace

# Regenerate schema.graphql from the code.
schema:
    cargo run -q -p api -- print-schema > schema.graphql

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Apply, roll back or inspect migrations: `just migrate up|down|status`.
migrate *args:
    cargo run -p migration -- {{args}}

# GraphQL-over-HTTP conformance audit (graphql-http) of the real binary on a
# fresh SQLite database, with an API key and a customer token (needs node/npm).
audit:
    bash api/tests/http-audit/run.sh

# Everything CI runs.
ci:
    bash .ci/run

# Benchmarks against baselines measured in the same run (local PostgreSQL
# at BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres):
# prints the ratio table and writes bench/results/<date>.md.
# `just bench --quick` takes ~2 minutes; see README "Performance".
# (The bench binary builds the release api binary first.)
bench *args:
    cargo run --release -p bench -- {{args}}
