//! [`get`]: one raw HTTP/1.0 `GET`, for tests of the telemetry listener (`/readyz`,
//! `/metrics`) that need the status line and the body and nothing more — no HTTP client in
//! the testkit.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The whole response to `GET {path}` on `addr`: status line, headers and body.
///
/// # Panics
/// If the connection fails (the server under test is down: the test must fail).
pub async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server under test");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
    response
}
