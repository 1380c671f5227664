//! The service harness itself: processes start, become ready, and stop when dropped.

use std::path::Path;
use std::time::Duration;

use butler_testkit::services::{free_port, PythonEnv, ServiceProcess};

async fn accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_service_is_reachable_once_ready_and_gone_after_drop() {
    let port = free_port();
    let mut service = ServiceProcess::spawn(
        "http-server",
        Path::new("/usr/bin/env"),
        &[
            "python3".into(),
            "-m".into(),
            "http.server".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            port.to_string(),
        ],
        &[],
        "install python3",
    )
    .unwrap();
    service
        .wait_ready(Duration::from_secs(20), || accepts(port))
        .await
        .unwrap();
    drop(service);
    let mut closed = false;
    for _ in 0..50 {
        if !accepts(port).await {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        closed,
        "the service kept running after its handle was dropped"
    );
}

#[tokio::test]
async fn a_service_that_exits_early_fails_with_its_log() {
    let mut service = ServiceProcess::spawn(
        "exits",
        Path::new("/bin/sh"),
        &["-c".into(), "echo boom-from-the-service >&2; exit 3".into()],
        &[],
        "",
    )
    .unwrap();
    let err = service
        .wait_ready(Duration::from_secs(10), || async { false })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("boom-from-the-service"), "{err}");
}

#[test]
fn a_missing_program_names_the_install_hint() {
    let err = ServiceProcess::spawn(
        "ghost",
        Path::new("/nonexistent/ghost"),
        &[],
        &[],
        "apt-get install ghost",
    )
    .unwrap_err();
    assert!(err.to_string().contains("apt-get install ghost"), "{err}");
}

#[test]
fn a_python_env_is_created_once_and_reused() {
    let env = PythonEnv::ensure("harness-selftest", &[]).unwrap();
    assert!(env.python().exists());
    assert!(env.site_packages().unwrap().is_dir());
    let again = PythonEnv::ensure("harness-selftest", &[]).unwrap();
    assert_eq!(env.root(), again.root());
}
