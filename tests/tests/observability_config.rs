//! The observability configuration, checked rather than hoped for: the alert rules pass
//! `promtool check rules` and their unit tests, the scrape example is a valid config, the
//! exported exposition passes `promtool check metrics`, and the alerts, the Grafana dashboard
//! and the operations doc name only metrics the telemetry module exports.
//!
//! promtool is required (Debian package `prometheus`); a missing promtool fails the test.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use butler_domain::Source;
use butler_infrastructure::telemetry::metrics::{self as m, MetricKind, ALL_METRICS};
use butler_infrastructure::telemetry::{
    build_recorder, CallOutcome, CompressionStatus, RequestStatus,
};

const ALERTS: &str = "config/prometheus/alerts/personalization.yml";
const ALERT_TESTS: &str = "config/prometheus/tests/personalization_test.yml";
const SCRAPE_CONFIG: &str = "config/prometheus/prometheus.yml";
const DASHBOARD: &str = "config/grafana/dashboards/personalization.json";
const METRICS_DOC: &str = "docs/operations/metrics.md";

const ALERT_NAMES: [&str; 5] = [
    "PersonalizationHighErrorRate",
    "MemoryCompressionFailures",
    "MemoryWorkerFailing",
    "LlmLatencyHigh",
    "ReminderSchedulerLagging",
];

// ---------------------------------------------------------------- helpers

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative))
        .unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// Runs promtool from the repository root, feeding `stdin` if given.
fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is required to check the alert rules ({e}): install the Debian package prometheus (apt-get install prometheus)")
        });
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(text.as_bytes())
            .expect("write to promtool");
    }
    child.wait_with_output().expect("promtool runs")
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `expr:` values of a rules file: inline, or a block scalar (`|`, `>`) whose lines are
/// indented deeper than the key.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            exprs.push(value.to_owned());
        }
    }
    exprs
}

/// Grouping and set keywords; a parenthesised label list after them is skipped.
const KEYWORDS: [&str; 10] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
];

/// Aggregation operators, which may be followed by `by (…)` rather than `(`.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Metric names a PromQL expression selects: identifiers outside label matchers (`{…}`),
/// ranges (`[…]`), strings and grouping clauses, that are not functions (followed by `(`),
/// keywords, numbers or dashboard variables (`$job`).
fn metric_names_in(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_past = |from: usize, close: char| {
        let mut j = from;
        let mut in_string = false;
        while j < chars.len() {
            match chars[j] {
                '\\' if in_string => j += 1,
                '"' => in_string = !in_string,
                c if c == close && !in_string => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_past(i + 1, '}');
        } else if c == '[' {
            i = skip_past(i + 1, ']');
        } else if c == '"' {
            i = skip_past(i + 1, '"');
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if KEYWORDS.contains(&word.as_str()) {
                if next == Some('(') {
                    let open = i + chars[i..]
                        .iter()
                        .position(|c| *c == '(')
                        .expect("found above");
                    i = skip_past(open + 1, ')');
                }
            } else if next != Some('(') && !AGGREGATIONS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The exported metric a sample name belongs to (`x_bucket` of histogram `x` is `x`).
fn exported_metric(name: &str) -> Option<&'static str> {
    ALL_METRICS.iter().find_map(|spec| {
        let series = match spec.kind {
            MetricKind::Histogram => ["", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(spec.name)),
            _ => name == spec.name,
        };
        series.then_some(spec.name)
    })
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is valid JSON")
}

fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
        .map(|target| {
            target["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_owned()
        })
        .collect()
}

// ---------------------------------------------------------------- promtool

#[test]
fn promtool_accepts_the_alert_rules() {
    assert_success(
        &promtool(&["check", "rules", ALERTS], None),
        "promtool check rules",
    );
}

#[test]
fn every_alert_fires_and_stays_quiet_in_its_promtool_unit_tests() {
    let tests = read(ALERT_TESTS);
    for alert in ALERT_NAMES {
        assert!(
            tests.matches(&format!("alertname: {alert}")).count() >= 2,
            "{alert} needs a firing and a quiet case"
        );
    }
    assert_success(
        &promtool(&["test", "rules", ALERT_TESTS], None),
        "promtool test rules",
    );
}

#[test]
fn the_scrape_example_is_a_valid_prometheus_config_that_loads_the_rules() {
    let config = read(SCRAPE_CONFIG);
    assert!(
        config.contains("alerts/personalization.yml"),
        "rule_files must load the alerts"
    );
    assert!(config.contains("job_name: butler-bot") && config.contains("job_name: memory-worker"));
    assert_success(
        &promtool(&["check", "config", SCRAPE_CONFIG], None),
        "promtool check config",
    );
}

#[test]
fn the_exported_exposition_passes_promtool_check_metrics() {
    let recorder = build_recorder().expect("recorder builds");
    metrics::with_local_recorder(&recorder, || {
        m::record_reply(Source::Voice, RequestStatus::Ok, Some(900));
        m::record_llm_request(CallOutcome::Ok, Duration::from_secs(2));
        m::record_compression(CompressionStatus::Ok);
    });
    let exposition = recorder.handle().render();
    assert_success(
        &promtool(&["check", "metrics"], Some(&exposition)),
        "promtool check metrics",
    );
}

// ---------------------------------------------------------------- alerts

#[test]
fn alert_expressions_name_only_exported_metrics() {
    let exprs = rule_exprs(&read(ALERTS));
    assert_eq!(exprs.len(), ALERT_NAMES.len(), "one expr per alert");
    for expr in exprs {
        let names = metric_names_in(&expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        for name in names {
            assert!(
                exported_metric(&name).is_some(),
                "alert uses unknown metric {name}: {expr}"
            );
        }
    }
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section() {
    let rules = read(ALERTS);
    let doc = read(METRICS_DOC);
    for alert in ALERT_NAMES {
        let (_, rest) = rules
            .split_once(&format!("- alert: {alert}\n"))
            .unwrap_or_else(|| panic!("no alert {alert}"));
        let rule = rest.split("- alert:").next().unwrap_or_default();
        for key in ["expr:", "severity:", "summary:", "description:"] {
            assert!(rule.contains(key), "{alert} has no {key}");
        }
        let anchor = format!("runbook: {METRICS_DOC}#{}", alert.to_lowercase());
        assert!(
            rule.contains(&anchor),
            "{alert} must point at its runbook: {anchor}"
        );
        assert!(
            doc.contains(&format!("### {alert}")),
            "{METRICS_DOC} has no section for {alert}"
        );
    }
}

// ---------------------------------------------------------------- dashboard

#[test]
fn the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable_and_queried_panels() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert!(
        dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating variables");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "a Prometheus datasource variable named `datasource`"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    let queried: Vec<_> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(
        queried.len() >= 8,
        "expected the personalization panels, got {}",
        queried.len()
    );
    let mut ids = BTreeSet::new();
    for panel in queried {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate id in {title}"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title} uses the datasource variable"
        );
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        assert!(targets.is_some(), "{title} has no queries");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
    }
}

#[test]
fn dashboard_queries_name_only_exported_metrics_and_show_every_one() {
    let mut shown = BTreeSet::new();
    for expr in dashboard_exprs(&dashboard()) {
        let names = metric_names_in(&expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        for name in names {
            let metric = exported_metric(&name)
                .unwrap_or_else(|| panic!("dashboard uses unknown metric {name}: {expr}"));
            shown.insert(metric);
        }
    }
    let missing: Vec<_> = ALL_METRICS
        .iter()
        .map(|s| s.name)
        .filter(|n| !shown.contains(n))
        .collect();
    assert!(missing.is_empty(), "metrics without a panel: {missing:?}");
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool has no "check expression"; a recording rule per query makes it parse them.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs(&dashboard()).iter().enumerate() {
        let concrete = expr.replace("$__rate_interval", "1m").replace("$job", ".*");
        let quoted = serde_json::to_string(&concrete).expect("a string serialises");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard_queries.rules.yml");
    std::fs::write(&path, rules).expect("write the generated rules");
    let path = path.to_str().expect("a UTF-8 path");
    assert_success(
        &promtool(&["check", "rules", path], None),
        "promtool check rules (dashboard queries)",
    );
}

// ---------------------------------------------------------------- docs

#[test]
fn the_metrics_doc_describes_every_metric_and_its_labels() {
    let doc = read(METRICS_DOC);
    for spec in ALL_METRICS {
        assert!(
            doc.contains(&format!("`{}`", spec.name)),
            "{METRICS_DOC} does not describe {}",
            spec.name
        );
        for label in spec.labels {
            assert!(
                doc.contains(&format!("`{label}`")),
                "{METRICS_DOC} does not explain label {label}"
            );
        }
    }
    for needle in [
        "/healthz",
        "/readyz",
        "LOG_FORMAT",
        "RUST_LOG",
        "METRICS_ADDR",
    ] {
        assert!(
            doc.contains(needle),
            "{METRICS_DOC} does not mention {needle}"
        );
    }
}

#[test]
fn the_promql_scanner_finds_metric_names_and_ignores_everything_else() {
    let expr = r#"histogram_quantile(0.95, sum by (job, le) (rate(llm_request_duration_seconds_bucket{job=~"$job",x="a{b}"}[$__rate_interval]))) > 20 and on (job) up"#;
    assert_eq!(
        metric_names_in(expr),
        BTreeSet::from([
            "llm_request_duration_seconds_bucket".to_owned(),
            "up".to_owned()
        ])
    );
    assert_eq!(
        exported_metric("llm_request_duration_seconds_bucket"),
        Some(m::LLM_REQUEST_DURATION_SECONDS)
    );
    assert_eq!(exported_metric("personalized_requests_total_bucket"), None);
}
