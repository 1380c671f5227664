//! The markdown table and the machine it was measured on.

use std::fmt::Write as _;
use std::time::Duration;

use crate::stats::Durations;

/// A duration for humans: µs below 1 ms, ms below 1 s, else s.
#[must_use]
pub fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// `p50 / p99`.
#[must_use]
pub fn p50_p99(d: &Durations) -> String {
    format!("{} / {}", dur(d.p50()), dur(d.p99()))
}

/// Bytes as MiB.
#[must_use]
pub fn mib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = bytes as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

/// A rate with thousands separators, e.g. `1,234 msg/s`.
#[must_use]
pub fn rate(per_second: f64, unit: &str) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = per_second.round() as u64;
    format!("{} {unit}", thousands(n))
}

/// `12345` → `12,345`.
#[must_use]
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One table row: the figure, a value per backend, the target.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is measured.
    pub figure: String,
    /// Values, one per backend column.
    pub values: Vec<String>,
    /// The target, or empty.
    pub target: String,
}

/// Renders rows under the given backend headings.
#[must_use]
pub fn table(backends: &[&str], rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = write!(out, "| Figure |");
    for b in backends {
        let _ = write!(out, " {b} |");
    }
    let _ = writeln!(out, " Target |");
    let _ = write!(out, "| --- |");
    for _ in backends {
        let _ = write!(out, " --- |");
    }
    let _ = writeln!(out, " --- |");
    for row in rows {
        let _ = write!(out, "| {} |", row.figure);
        for v in &row.values {
            let _ = write!(out, " {v} |");
        }
        let _ = writeln!(out, " {} |", row.target);
    }
    out
}

/// CPU model, cores, memory, kernel, compiler and build profile.
#[must_use]
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{} GiB", kb / (1024 * 1024)),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rustc unknown".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    let profile = if cfg!(debug_assertions) {
        "debug build (figures not comparable with release)"
    } else {
        "release build"
    };
    format!(
        "{cpu}, {cores} cores, {memory} RAM, Linux {kernel}, {rustc}, {profile}; \
         load average at start {load}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(dur(Duration::from_micros(850)), "850 µs");
        assert_eq!(dur(Duration::from_micros(3_210)), "3.21 ms");
        assert_eq!(dur(Duration::from_millis(1_500)), "1.50 s");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(rate(1234.4, "msg/s"), "1,234 msg/s");
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
        let t = table(
            &["A", "B"],
            &[Row {
                figure: "x".into(),
                values: vec!["1".into(), "2".into()],
                target: "< 3".into(),
            }],
        );
        assert_eq!(
            t,
            "| Figure | A | B | Target |\n| --- | --- | --- | --- |\n| x | 1 | 2 | < 3 |\n"
        );
    }
}
