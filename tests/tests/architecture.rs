//! The dependency rule (DESIGN §2), checked mechanically: the domain and application crates
//! never depend — directly or transitively, through normal dependencies — on a database
//! driver, an HTTP client, Telegram, or the tokio runtime.

use std::collections::BTreeSet;
use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "mongodb",
    "rusqlite",
    "reqwest",
    "teloxide",
    "hyper",
    "axum",
    "llama-cpp-2",
];

/// Names of every crate reachable from `root` through normal (non-dev, non-build) edges, on
/// this platform — `cargo tree -e normal`, the same check `just lint` documents.
fn normal_closure(root: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            root,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{lib}|{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split('|').nth(1))
        .filter_map(|package| package.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_domain_crate_depends_on_no_runtime_driver_or_client() {
    let deps = normal_closure("butler-domain");
    let bad: Vec<_> = FORBIDDEN.iter().filter(|f| deps.contains(**f)).collect();
    assert!(bad.is_empty(), "butler-domain depends on {bad:?}");
    assert!(
        !deps.contains("butler-application"),
        "the domain depends on nothing of ours"
    );
}

#[test]
fn the_application_crate_depends_on_no_runtime_driver_or_client() {
    let deps = normal_closure("butler-application");
    let bad: Vec<_> = FORBIDDEN.iter().filter(|f| deps.contains(**f)).collect();
    assert!(bad.is_empty(), "butler-application depends on {bad:?}");
    for inner in [
        "butler-infrastructure",
        "butler-presentation",
        "butler-factory",
        "butler-testkit",
    ] {
        assert!(
            !deps.contains(inner),
            "butler-application must not depend on {inner}"
        );
    }
}

#[test]
fn infrastructure_depends_on_the_domain_but_not_on_use_cases_or_front_ends() {
    let deps = normal_closure("butler-infrastructure");
    assert!(deps.contains("butler-domain"));
    for inner in [
        "butler-application",
        "butler-presentation",
        "butler-factory",
    ] {
        assert!(
            !deps.contains(inner),
            "butler-infrastructure must not depend on {inner}"
        );
    }
}
