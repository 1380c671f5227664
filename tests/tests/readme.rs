//! The README is part of the product: its prerequisites line is what CI installs, and the
//! commands it promises exist.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Packages of the README's `apt-get install` line.
fn readme_packages() -> Vec<String> {
    let readme = read("README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("apt-get install -y"))
        .expect("the README has an apt-get install line");
    let mut packages: Vec<String> = line
        .split("apt-get install -y")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .take_while(|w| !w.starts_with('#'))
        .map(str::to_owned)
        .collect();
    packages.sort();
    packages
}

#[test]
fn ci_installs_exactly_the_packages_the_readme_lists() {
    let ci = read(".ci/run");
    let line = ci
        .lines()
        .find(|l| l.starts_with("packages=("))
        .expect(".ci/run declares its packages");
    let mut packages: Vec<String> = line
        .trim_start_matches("packages=(")
        .trim_end_matches(')')
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    packages.sort();
    assert_eq!(packages, readme_packages());
}

#[test]
fn the_readme_runs_the_bot_and_the_tests_with_one_command_each() {
    let readme = read("README.md");
    assert!(readme.contains("cargo run --release --bin butler-bot -- chat"));
    assert!(readme.contains("\ncargo test --workspace\n"));
    let ci = read(".ci/run");
    assert!(
        ci.contains("cargo test --workspace --locked"),
        "CI runs the README's test command"
    );
}
