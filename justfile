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

# Talk to the butler in the terminal.
chat *ARGS:
    cargo run --release --bin butler-bot -- chat {{ARGS}}

# Run the Telegram bot.
run-bot:
    cargo run --release --bin butler-bot

# Compress the memory of users over the threshold, once.
run-memory-worker *ARGS:
    cargo run --release --bin memory-worker -- --once {{ARGS}}
