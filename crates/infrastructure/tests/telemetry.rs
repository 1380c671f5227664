//! The telemetry listener, scraped over HTTP as Prometheus would: every metric is described
//! and present before the first event, labels are bounded, the helpers move the series they
//! name, the exposition parses; health endpoints; and logs never carry secrets.
//!
//! Each test builds its own recorder and records through `metrics::with_local_recorder`, so
//! tests in this process never share (or fight over) the global recorder.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use butler_domain::{Role, Source};
use butler_infrastructure::telemetry::exporter::READINESS_TIMEOUT;
use butler_infrastructure::telemetry::logging::{self, LogConfig, LogFormat, LoggingError};
use butler_infrastructure::telemetry::metrics::{self as m, MetricKind, ALL_METRICS};
use butler_infrastructure::telemetry::{
    build_recorder, install_recorder, CallOutcome, ComponentStatus, CompressionStatus, Readiness,
    ReadinessProbe, RequestStatus, TelemetryError, TelemetryServer,
};
use metrics_exporter_prometheus::PrometheusRecorder;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------- harness

/// A telemetry listener on a free loopback port with its own recorder.
struct TestTelemetry {
    recorder: PrometheusRecorder,
    server: TelemetryServer,
}

impl TestTelemetry {
    async fn spawn() -> Self {
        Self::spawn_with_probe(Arc::new(|| async { healthy() })).await
    }

    async fn spawn_with_probe(probe: Arc<dyn ReadinessProbe>) -> Self {
        let recorder = build_recorder().expect("recorder builds");
        let server = TelemetryServer::start(loopback(), recorder.handle(), probe)
            .await
            .expect("listener starts");
        Self { recorder, server }
    }

    /// Runs `record` against this instance's recorder.
    fn record(&self, record: impl FnOnce()) {
        metrics::with_local_recorder(&self.recorder, record);
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.server.local_addr(), path).await
    }

    async fn scrape(&self) -> Exposition {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Exposition::parse(&body)
            .unwrap_or_else(|problem| panic!("exposition does not parse: {problem}\n{body}"))
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn healthy() -> Readiness {
    Readiness {
        storage: ComponentStatus::Up,
        llm: ComponentStatus::Up,
        inbox_backlog: None,
    }
}

/// A minimal HTTP/1.1 GET (one request per connection), enough for these three endpoints.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the telemetry listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .await
        .expect("read response");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("an HTTP response with a head");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked body"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

// ---------------------------------------------------------------- exposition parser

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metric family: HELP, TYPE and its samples.
#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<Sample>,
}

/// The Prometheus text format (0.0.4), parsed strictly enough to catch a malformed exposition:
/// every sample belongs to a family announced by `# TYPE` before it, values are numbers, label
/// pairs are quoted, histogram buckets are cumulative and end in `+Inf` equal to `_count`.
#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    fn parse(text: &str) -> Result<Self, String> {
        let mut exposition = Self::default();
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest
                    .split_once(' ')
                    .ok_or(format!("line {number}: HELP without text"))?;
                exposition.families.entry(name.to_owned()).or_default().help =
                    Some(help.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or(format!("line {number}: TYPE without kind"))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("line {number}: unknown type {kind}"));
                }
                exposition.families.entry(name.to_owned()).or_default().kind =
                    Some(kind.to_owned());
            } else if line.starts_with('#') {
                continue;
            } else {
                let sample =
                    parse_sample(line).map_err(|e| format!("line {number}: {e}: {line}"))?;
                let family = exposition
                    .family_of(&sample.name)
                    .ok_or(format!("line {number}: no TYPE for {line}"))?;
                exposition
                    .families
                    .get_mut(&family)
                    .expect("family exists")
                    .samples
                    .push(sample);
            }
        }
        for (name, family) in &exposition.families {
            if family.kind.as_deref() == Some("histogram") {
                check_histogram(name, family)?;
            }
        }
        Ok(exposition)
    }

    fn family_of(&self, sample: &str) -> Option<String> {
        if self.families.get(sample).is_some_and(|f| f.kind.is_some()) {
            return Some(sample.to_owned());
        }
        ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find(|base| {
                self.families.get(*base).and_then(|f| f.kind.as_deref()) == Some("histogram")
            })
            .map(str::to_owned)
    }

    fn family(&self, name: &str) -> &Family {
        self.families
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not exported"))
    }

    /// The value of the one sample named `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let family = self
            .family_of(name)
            .unwrap_or_else(|| panic!("{name} is not exported"));
        self.families[&family]
            .samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .unwrap_or_else(|| panic!("no sample {name}{wanted:?}"))
            .value
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let close = inner.find('}').ok_or("unclosed label set")?;
        for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
            let (key, quoted) = pair.split_once('=').ok_or("label without =")?;
            let value = quoted
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or(format!("unquoted label value {quoted}"))?;
            labels.insert(key.to_owned(), value.to_owned());
        }
        rest = &inner[close + 1..];
    }
    let value = rest.trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse::<f64>()
            .map_err(|e| format!("bad value {other:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A series' labels without `le`, and its `(le, cumulative count)` buckets.
type BucketSeries = BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>>;

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let bucket_name = format!("{name}_bucket");
    let count_name = format!("{name}_count");
    let mut series = BucketSeries::new();
    for sample in family.samples.iter().filter(|s| s.name == bucket_name) {
        let le = sample
            .labels
            .get("le")
            .ok_or(format!("{name}: bucket without le"))?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().map_err(|_| format!("{name}: le {le}"))?
        };
        let key = sample
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series.entry(key).or_default().push((le, sample.value));
    }
    if series.is_empty() {
        return Err(format!("{name}: histogram without buckets"));
    }
    for (labels, buckets) in series {
        let bounds_ascend = buckets.windows(2).all(|w| w[0].0 < w[1].0);
        let counts_cumulative = buckets.windows(2).all(|w| w[0].1 <= w[1].1);
        if !bounds_ascend || !counts_cumulative {
            return Err(format!(
                "{name}{labels:?}: buckets not ascending and cumulative"
            ));
        }
        let (last_le, last_count) = *buckets.last().expect("non-empty");
        let count = family
            .samples
            .iter()
            .find(|s| {
                s.name == count_name
                    && s.labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>()
                        == labels
            })
            .ok_or(format!("{name}{labels:?}: no _count"))?;
        if !last_le.is_infinite() || (last_count - count.value).abs() > f64::EPSILON {
            return Err(format!("{name}{labels:?}: +Inf bucket must equal _count"));
        }
    }
    Ok(())
}

fn expected_type(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Histogram => "histogram",
        MetricKind::Gauge => "gauge",
    }
}

// ---------------------------------------------------------------- /metrics

#[tokio::test]
async fn every_metric_is_exported_with_its_help_text_before_the_first_event() {
    let telemetry = TestTelemetry::spawn().await;
    let exposition = telemetry.scrape().await;

    for spec in ALL_METRICS {
        let family = exposition.family(spec.name);
        assert_eq!(
            family.help.as_deref(),
            Some(spec.help),
            "HELP of {}",
            spec.name
        );
        assert_eq!(
            family.kind.as_deref(),
            Some(expected_type(spec.kind)),
            "TYPE of {}",
            spec.name
        );
        assert!(
            !family.samples.is_empty(),
            "{} has no series before the first event",
            spec.name
        );
        if spec.kind == MetricKind::Counter {
            assert!(
                family.samples.iter().all(|s| s.value == 0.0),
                "{} is not 0 at start",
                spec.name
            );
        }
    }
    assert_eq!(
        exposition.value(m::BUTLER_BUILD_INFO, &[("version", m::BUILD_VERSION)]),
        1.0
    );
    assert_eq!(
        exposition.value("personalized_prompt_tokens_count", &[]),
        0.0
    );
}

#[tokio::test]
async fn every_label_combination_is_registered_and_no_other_exists() {
    let telemetry = TestTelemetry::spawn().await;
    // Record some events first: recording must not widen the label sets.
    telemetry.record(|| {
        m::record_reply(Source::Voice, RequestStatus::Degraded, Some(700));
        m::record_llm_request(CallOutcome::Error, Duration::from_secs(3));
        m::record_compression(CompressionStatus::Conflict);
        m::record_telegram_refusal("quota");
        m::record_telegram_refusal("an unknown reason");
        m::record_fact_extraction_failure("an unknown reason");
    });
    let exposition = telemetry.scrape().await;

    let allowed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        ("role", BTreeSet::from(["user", "assistant"])),
        ("source", BTreeSet::from(["text", "voice"])),
        ("outcome", BTreeSet::from(["ok", "error"])),
        ("version", BTreeSet::from([m::BUILD_VERSION])),
        ("kind", BTreeSet::from(["evaluated", "reused"])),
        // The pool registers its servers by index; a registry alone knows of server 0.
        ("server", BTreeSet::from(["0"])),
        ("method", BTreeSet::from(["getMe", "setWebhook"])),
        ("handling", BTreeSet::from(["answered", "kept"])),
        ("matched", BTreeSet::from(["yes", "no"])),
        (
            "event",
            BTreeSet::from(["scheduled", "fired", "late", "cancelled", "failed"]),
        ),
    ]);
    let reasons_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        (
            m::TELEGRAM_MESSAGES_REFUSED_TOTAL,
            BTreeSet::from(["rate", "quota"]),
        ),
        (
            m::MEMORY_FACT_EXTRACTION_FAILURES_TOTAL,
            BTreeSet::from(["llm", "malformed", "storage"]),
        ),
    ]);
    let statuses_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        (
            m::PERSONALIZED_REQUESTS_TOTAL,
            BTreeSet::from(["ok", "degraded", "error", "repeated", "stopped"]),
        ),
        (
            m::PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL,
            BTreeSet::from(["ok", "conflict", "error", "skipped", "busy"]),
        ),
    ]);
    for spec in ALL_METRICS {
        let family = exposition.family(spec.name);
        for sample in &family.samples {
            let names: BTreeSet<&str> = sample
                .labels
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "le")
                .collect();
            assert_eq!(
                names,
                spec.labels.iter().copied().collect(),
                "labels of {}",
                sample.name
            );
            for (key, value) in &sample.labels {
                let ok = match key.as_str() {
                    "le" => true,
                    "status" => statuses_of[spec.name].contains(value.as_str()),
                    "reason" => reasons_of[spec.name].contains(value.as_str()),
                    other => allowed[other].contains(value.as_str()),
                };
                assert!(
                    ok,
                    "{}: unbounded or unknown label {key}={value}",
                    sample.name
                );
            }
        }
    }

    let series = |name: &str| {
        exposition
            .family(name)
            .samples
            .iter()
            .filter(|s| s.name == name)
            .count()
    };
    assert_eq!(
        series(m::PERSONALIZED_REQUESTS_TOTAL),
        10,
        "source × status"
    );
    assert_eq!(series(m::PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL), 5);
    assert_eq!(series(m::USER_MEMORY_EVENTS_TOTAL), 2);
    assert_eq!(series(m::MEMORY_FACT_EXTRACTION_FAILURES_TOTAL), 3);
    assert_eq!(
        exposition
            .family(m::LLM_REQUEST_DURATION_SECONDS)
            .samples
            .iter()
            .filter(|s| s.name.ends_with("_count"))
            .count(),
        2,
        "one histogram per outcome"
    );
}

/// A sample name, its labels, and the value it should have.
type ExpectedSample = (&'static str, &'static [(&'static str, &'static str)], f64);

#[tokio::test]
async fn the_recording_helpers_move_exactly_the_series_they_name() {
    let telemetry = TestTelemetry::spawn().await;
    telemetry.record(|| {
        m::record_profile_read();
        m::record_profile_read();
        m::record_profile_write();
        m::record_memory_event(Role::User);
        m::record_memory_event(Role::Assistant);
        m::record_memory_event(Role::User);
        m::record_summary_saved();
        m::record_reply(Source::Text, RequestStatus::Ok, Some(1200));
        m::record_reply(Source::Voice, RequestStatus::Ok, Some(300));
        m::record_reply(Source::Text, RequestStatus::Error, None);
        m::record_llm_request(CallOutcome::Ok, Duration::from_millis(1500));
        m::record_llm_request(CallOutcome::Error, Duration::from_secs(25));
        m::record_stt_request(CallOutcome::Ok, Duration::from_millis(800));
        m::record_compression(CompressionStatus::Ok);
        m::record_compression(CompressionStatus::Error);
        m::record_worker_run(false);
        m::record_worker_run(true);
        m::record_telegram_send_error();
        m::record_facts_saved(3, 1);
        m::record_fact_extraction_failure("malformed");
        m::record_prompt_facts(3);
    });
    let exposition = telemetry.scrape().await;

    let expected: &[ExpectedSample] = &[
        (m::USER_PROFILE_READS_TOTAL, &[], 2.0),
        (m::USER_PROFILE_WRITES_TOTAL, &[], 1.0),
        (m::USER_MEMORY_EVENTS_TOTAL, &[("role", "user")], 2.0),
        (m::USER_MEMORY_EVENTS_TOTAL, &[("role", "assistant")], 1.0),
        (m::USER_MEMORY_COMPRESSIONS_TOTAL, &[], 1.0),
        (
            m::PERSONALIZED_REQUESTS_TOTAL,
            &[("source", "text"), ("status", "ok")],
            1.0,
        ),
        (
            m::PERSONALIZED_REQUESTS_TOTAL,
            &[("source", "voice"), ("status", "ok")],
            1.0,
        ),
        (
            m::PERSONALIZED_REQUESTS_TOTAL,
            &[("source", "text"), ("status", "error")],
            1.0,
        ),
        (
            m::PERSONALIZED_REQUESTS_TOTAL,
            &[("source", "voice"), ("status", "degraded")],
            0.0,
        ),
        (m::MEMORY_FACTS_EXTRACTED_TOTAL, &[], 3.0),
        (m::MEMORY_FACTS_SUPERSEDED_TOTAL, &[], 1.0),
        (
            m::MEMORY_FACT_EXTRACTION_FAILURES_TOTAL,
            &[("reason", "malformed")],
            1.0,
        ),
        (
            m::MEMORY_FACT_EXTRACTION_FAILURES_TOTAL,
            &[("reason", "llm")],
            0.0,
        ),
        ("personalized_prompt_facts_bucket", &[("le", "2")], 0.0),
        ("personalized_prompt_facts_bucket", &[("le", "4")], 1.0),
        // A reply without a prompt records no token observation.
        ("personalized_prompt_tokens_count", &[], 2.0),
        ("personalized_prompt_tokens_sum", &[], 1500.0),
        ("personalized_prompt_tokens_bucket", &[("le", "400")], 1.0),
        ("personalized_prompt_tokens_bucket", &[("le", "1200")], 2.0),
        (
            "llm_request_duration_seconds_count",
            &[("outcome", "ok")],
            1.0,
        ),
        (
            "llm_request_duration_seconds_bucket",
            &[("outcome", "error"), ("le", "20")],
            0.0,
        ),
        (
            "llm_request_duration_seconds_bucket",
            &[("outcome", "error"), ("le", "30")],
            1.0,
        ),
        (
            "stt_request_duration_seconds_sum",
            &[("outcome", "ok")],
            0.8,
        ),
        (
            "stt_request_duration_seconds_count",
            &[("outcome", "error")],
            0.0,
        ),
        (
            m::PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL,
            &[("status", "ok")],
            1.0,
        ),
        (
            m::PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL,
            &[("status", "error")],
            1.0,
        ),
        (
            m::PERSONALIZED_MEMORY_COMPRESSIONS_TOTAL,
            &[("status", "skipped")],
            0.0,
        ),
        (m::PERSONALIZED_MEMORY_WORKER_RUNS_TOTAL, &[], 2.0),
        (m::PERSONALIZED_MEMORY_WORKER_ERRORS_TOTAL, &[], 1.0),
        (m::TELEGRAM_SEND_ERRORS_TOTAL, &[], 1.0),
    ];
    for (name, labels, value) in expected {
        assert_eq!(exposition.value(name, labels), *value, "{name}{labels:?}");
    }
}

#[tokio::test]
async fn two_instances_in_one_process_keep_separate_counts() {
    let first = TestTelemetry::spawn().await;
    let second = TestTelemetry::spawn().await;
    first.record(m::record_telegram_send_error);

    assert_eq!(
        first
            .scrape()
            .await
            .value(m::TELEGRAM_SEND_ERRORS_TOTAL, &[]),
        1.0
    );
    assert_eq!(
        second
            .scrape()
            .await
            .value(m::TELEGRAM_SEND_ERRORS_TOTAL, &[]),
        0.0
    );
}

#[tokio::test]
async fn metrics_are_served_with_the_prometheus_text_content_type() {
    let telemetry = TestTelemetry::spawn().await;
    let mut stream = TcpStream::connect(telemetry.server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
}

#[test]
fn installing_the_global_recorder_twice_is_an_error_not_a_panic() {
    // The only test in this binary that touches the global recorder.
    let handle = install_recorder().expect("first install succeeds");
    m::record_telegram_send_error();
    assert!(
        handle.render().contains("telegram_send_errors_total 1"),
        "{}",
        handle.render()
    );
    assert!(matches!(
        install_recorder(),
        Err(TelemetryError::AlreadyInstalled)
    ));
}

// ---------------------------------------------------------------- health

#[tokio::test]
async fn healthz_answers_ok_while_the_process_is_up() {
    let telemetry = TestTelemetry::spawn().await;
    assert_eq!(telemetry.get("/healthz").await, (200, "ok".to_owned()));
}

#[tokio::test]
async fn readyz_is_ready_when_storage_is_reachable_and_reports_an_unreachable_llm() {
    let probe = Arc::new(|| async {
        Readiness {
            storage: ComponentStatus::Up,
            llm: ComponentStatus::down("llm.local: connection refused"),
            inbox_backlog: Some(7),
        }
    });
    let telemetry = TestTelemetry::spawn_with_probe(probe).await;
    let (status, body) = telemetry.get("/readyz").await;

    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["status"], "ready");
    assert_eq!(json["storage"]["status"], "up");
    assert_eq!(json["llm"]["status"], "down");
    assert_eq!(json["llm"]["reason"], "llm.local: connection refused");
    assert_eq!(
        json["inbox"]["backlog"], 7,
        "the bot's inbox backlog is reported"
    );
}

#[tokio::test]
async fn readyz_is_unavailable_when_storage_is_unreachable() {
    let probe = Arc::new(|| async {
        Readiness {
            storage: ComponentStatus::down("sqlite: database is locked"),
            llm: ComponentStatus::Up,
            inbox_backlog: None,
        }
    });
    let telemetry = TestTelemetry::spawn_with_probe(probe).await;
    let (status, body) = telemetry.get("/readyz").await;

    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["status"], "not_ready");
    assert_eq!(json["storage"]["reason"], "sqlite: database is locked");
    assert_eq!(json["llm"]["status"], "up");
}

#[tokio::test(start_paused = true)]
async fn readyz_is_unavailable_when_the_probe_hangs_past_its_timeout() {
    let probe = Arc::new(|| async {
        tokio::time::sleep(READINESS_TIMEOUT * 2).await;
        healthy()
    });
    let telemetry = TestTelemetry::spawn_with_probe(probe).await;
    let (status, body) = telemetry.get("/readyz").await;

    assert_eq!(status, 503, "{body}");
    assert!(body.contains("timed out"), "{body}");
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let telemetry = TestTelemetry::spawn().await;
    let addr = telemetry.server.local_addr();
    telemetry.server.shutdown().await.expect("clean shutdown");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still listening on {addr}"
    );
}

#[tokio::test]
async fn a_taken_address_is_a_bind_error_naming_it() {
    let telemetry = TestTelemetry::spawn().await;
    let taken = telemetry.server.local_addr();
    let error = TelemetryServer::start(
        taken,
        telemetry.recorder.handle(),
        Arc::new(|| async { healthy() }),
    )
    .await
    .expect_err("the port is taken");
    assert!(matches!(error, TelemetryError::Bind { addr, .. } if addr == taken));
    assert!(error.to_string().contains(&taken.to_string()));
}

// ---------------------------------------------------------------- logging

/// A `MakeWriter` collecting log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Logs through a fresh subscriber with `config` and returns what it wrote.
fn capture_logs(config: &LogConfig, log: impl FnOnce()) -> String {
    let captured = Captured::default();
    let subscriber = logging::subscriber(config, captured.clone()).expect("subscriber builds");
    tracing::subscriber::with_default(subscriber, log);
    captured.text()
}

/// What a settings struct with secrets looks like (the factory's holds `SecretString`s).
#[derive(Debug)]
#[allow(dead_code)] // read only through Debug, which is the point
struct BotSettings {
    telegram_token: SecretString,
    llm_api_key: SecretString,
    llm_base_url: String,
}

const TOKEN: &str = "123456:AAE-very-secret-telegram-token";
const API_KEY: &str = "sk-also-very-secret";

fn settings() -> BotSettings {
    BotSettings {
        telegram_token: SecretString::from(TOKEN),
        llm_api_key: SecretString::from(API_KEY),
        llm_base_url: "http://llm.local:8080/v1".to_owned(),
    }
}

#[test]
fn a_logged_settings_struct_shows_its_secrets_redacted_in_every_format() {
    for format in [LogFormat::Json, LogFormat::Pretty] {
        let config = LogConfig {
            format,
            filter: "info".to_owned(),
        };
        let output = capture_logs(&config, || {
            let settings = settings();
            tracing::info!(?settings, "settings loaded");
        });

        assert!(
            output.contains("settings loaded"),
            "{format}: nothing logged: {output}"
        );
        assert!(
            output.contains("llm.local"),
            "{format}: the settings were not logged: {output}"
        );
        assert!(
            !output.contains(TOKEN) && !output.contains("very-secret"),
            "{format}: secret leaked: {output}"
        );
        assert!(
            output.contains("REDACTED") || output.contains("***"),
            "{format}: no redaction marker: {output}"
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_fields_not_formatted_strings() {
    let config = LogConfig {
        format: LogFormat::Json,
        filter: "info".to_owned(),
    };
    let output = capture_logs(&config, || {
        tracing::info!(
            user_id = 42_u64,
            prompt_tokens = 812_u64,
            status = "ok",
            "reply sent"
        );
    });
    let line: serde_json::Value = serde_json::from_str(output.trim()).expect("one JSON object");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["message"], "reply sent");
    assert_eq!(line["fields"]["user_id"], 42);
    assert_eq!(line["fields"]["prompt_tokens"], 812);
}

#[test]
fn message_text_logged_at_debug_stays_out_of_info_level_logs() {
    let config = LogConfig::default();
    let output = capture_logs(&config, || {
        tracing::debug!(text = "my bank PIN is 1234", "incoming message");
        tracing::info!(user_id = 42_u64, "reply sent");
    });
    assert!(output.contains("reply sent"), "{output}");
    assert!(!output.contains("PIN"), "{output}");
}

#[test]
fn a_bad_filter_is_an_error_naming_the_variable_not_a_panic() {
    let error =
        LogConfig::from_lookup(|name| (name == "RUST_LOG").then(|| "info,butler=loud".to_owned()))
            .expect_err("`loud` is not a level");
    assert!(matches!(&error, LoggingError::Filter { filter, .. } if filter == "info,butler=loud"));
    assert!(error.to_string().contains("RUST_LOG"), "{error}");

    let config = LogConfig {
        format: LogFormat::Json,
        filter: "butler=loud".to_owned(),
    };
    assert!(logging::subscriber(&config, Captured::default()).is_err());
}

#[test]
fn log_format_is_json_or_pretty_and_defaults_to_pretty_at_info() {
    let config = LogConfig::from_lookup(|_| None).expect("defaults are valid");
    assert_eq!(
        config,
        LogConfig {
            format: LogFormat::Pretty,
            filter: "info,llama-cpp-2=warn".to_owned()
        }
    );

    let json = LogConfig::from_lookup(|name| (name == "LOG_FORMAT").then(|| "JSON".to_owned()))
        .expect("json");
    assert_eq!(json.format, LogFormat::Json);

    let error = LogConfig::from_lookup(|name| (name == "LOG_FORMAT").then(|| "xml".to_owned()))
        .expect_err("xml");
    assert!(error.to_string().contains("LOG_FORMAT"), "{error}");
}
