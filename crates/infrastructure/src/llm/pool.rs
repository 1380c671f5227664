//! [`ServerPool`]: the OpenAI-compatible servers one chat client spreads its requests over
//! (`LLM_BASE_URL` with several URLs). Each attempt of a call goes to the healthy server with
//! the fewest outstanding requests that is under its own concurrency limit. A server that fails
//! — connection refused or broken, connect timeout, `5xx` — is taken out for an exponential,
//! capped back-off, then probed with `GET {base}/models` before it takes requests again (only a
//! `2xx` answer counts), and the failed attempt moves to another healthy server at once (a
//! retry happens only before a response was accepted, so a streamed reply never fails over
//! after its first delta).
//!
//! With one server nothing is ever taken out: there is nowhere else to go, so every request
//! tries it, exactly as a single URL always worked. When every server of a larger pool is out,
//! requests likewise still try the one whose back-off ends first (last resort), so "all down"
//! ends as it always did: the call's retries, then an error the reply use case answers with
//! its fallback text.
//!
//! Metrics carry the server's index in the list (`server="0"`), never its URL.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::http::{with_retries, Attempt, CallError, Endpoint, HttpCaller};
use crate::telemetry::metrics;

/// The longest a health probe may take, connection included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a failed server stays out of the pool before it is probed: `first` after one
/// failure, doubling with each further consecutive failure (a failed probe counts), never more
/// than `max`. A success — a request or a probe — resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerBackoff {
    /// Back-off after the first failure.
    pub first: Duration,
    /// The cap.
    pub max: Duration,
}

impl Default for ServerBackoff {
    /// One second, doubling up to a minute: a restarting server is back within seconds of
    /// coming up, and a dead one costs one probe a minute.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl ServerBackoff {
    /// The back-off after `failures` consecutive failures (at least one).
    #[must_use]
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .saturating_mul(2_u32.saturating_pow(doublings))
            .min(self.max)
    }
}

/// Whether a server takes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Takes requests.
    Up,
    /// Out until `until`, then probed.
    Down { until: Instant },
    /// Out, a probe is running.
    Probing,
}

#[derive(Debug, Clone)]
struct ServerState {
    outstanding: usize,
    health: Health,
    /// Consecutive failures (requests or probes) since the last success.
    failures: u32,
}

impl ServerState {
    const fn new() -> Self {
        Self {
            outstanding: 0,
            health: Health::Up,
            failures: 0,
        }
    }

    /// When a server that is out may be tried again (`None`: up, or being probed now).
    const fn back_at(&self) -> Option<Instant> {
        match self.health {
            Health::Down { until } => Some(until),
            Health::Up | Health::Probing => None,
        }
    }
}

/// The server the next attempt goes to: the healthy one with the fewest outstanding requests
/// under `limit` (ties: the first in the list). When no server is healthy, any under `limit`,
/// the one back soonest first (last resort). `None`: wait for a slot.
fn choose(states: &[ServerState], limit: usize) -> Option<usize> {
    let any_up = states.iter().any(|s| s.health == Health::Up);
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.outstanding < limit && (!any_up || s.health == Health::Up))
        .min_by_key(|(i, s)| (s.outstanding, s.back_at(), *i))
        .map(|(i, _)| i)
}

/// Marks every server whose back-off is over as being probed; returns them.
fn due_for_probe(states: &mut [ServerState], now: Instant) -> Vec<usize> {
    let mut due = Vec::new();
    for (index, state) in states.iter_mut().enumerate() {
        if state.back_at().is_some_and(|until| until <= now) {
            state.health = Health::Probing;
            due.push(index);
        }
    }
    due
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent under every lock (plain counters), so a panic elsewhere must
    // not take the pool down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state every clone of the pool, every lease and every probe shares.
#[derive(Debug)]
struct Shared {
    states: Mutex<Vec<ServerState>>,
    /// Signalled when a slot frees or a server comes back.
    changed: Notify,
    /// Outstanding requests one server may have.
    limit: usize,
    backoff: ServerBackoff,
}

impl Shared {
    fn label(index: usize) -> String {
        index.to_string()
    }

    fn succeeded(&self, index: usize) {
        let came_back = {
            let mut states = lock(&self.states);
            let state = &mut states[index];
            state.failures = 0;
            std::mem::replace(&mut state.health, Health::Up) != Health::Up
        };
        if came_back {
            tracing::info!(server = index, "LLM server is back in the pool");
            metrics::set_llm_server_healthy(&Self::label(index), true);
            self.changed.notify_waiters();
        }
    }

    /// Records a failure of server `index` and, in a pool of several, takes it out. Returns
    /// whether another server is healthy to fail over to.
    fn failed(&self, index: usize, now: Instant) -> bool {
        metrics::record_llm_server_failure(&Self::label(index));
        let mut states = lock(&self.states);
        if states.len() < 2 {
            return false;
        }
        let state = &mut states[index];
        state.failures = state.failures.saturating_add(1);
        let backoff = self.backoff.after(state.failures);
        state.health = Health::Down {
            until: now + backoff,
        };
        let failures = state.failures;
        let others_up = states.iter().any(|s| s.health == Health::Up);
        drop(states);
        tracing::warn!(
            server = index,
            failures,
            backoff_ms = backoff.as_millis(),
            "LLM server taken out of the pool"
        );
        metrics::set_llm_server_healthy(&Self::label(index), false);
        others_up
    }
}

/// A request slot on one server, held for as long as the server works on the request (for a
/// stream, until it ends or is dropped).
#[derive(Debug)]
pub(super) struct Lease {
    shared: Arc<Shared>,
    index: usize,
}

impl Lease {
    /// The server's index in the list.
    pub(super) const fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let outstanding = {
            let mut states = lock(&self.shared.states);
            let state = &mut states[self.index];
            state.outstanding = state.outstanding.saturating_sub(1);
            state.outstanding
        };
        metrics::set_llm_server_outstanding(&Shared::label(self.index), outstanding);
        self.shared.changed.notify_waiters();
    }
}

/// One server of the pool: where completions go, and where it is probed.
#[derive(Debug, Clone)]
struct Server {
    caller: HttpCaller,
    models: Endpoint,
}

/// The servers of one chat client. Clones share the state (and the probes).
#[derive(Debug, Clone)]
pub(super) struct ServerPool {
    servers: Arc<[Server]>,
    shared: Arc<Shared>,
    /// Running probes; dropped (aborted) with the last clone of the pool.
    probes: Arc<Mutex<JoinSet<()>>>,
}

impl ServerPool {
    /// A pool of `servers` — each a caller of `{base}/chat/completions` and the
    /// `{base}/models` endpoint it is probed at — sending at most `limit` requests to any one.
    ///
    /// # Panics
    /// Never in practice: the client builds it from at least one URL.
    pub(super) fn new(
        servers: Vec<(HttpCaller, Endpoint)>,
        limit: usize,
        backoff: ServerBackoff,
    ) -> Self {
        assert!(!servers.is_empty(), "a server pool needs a server");
        let servers: Arc<[Server]> = servers
            .into_iter()
            .map(|(caller, models)| Server { caller, models })
            .collect();
        Self {
            shared: Arc::new(Shared {
                states: Mutex::new(vec![ServerState::new(); servers.len()]),
                changed: Notify::new(),
                limit: limit.max(1),
                backoff,
            }),
            servers,
            probes: Arc::default(),
        }
    }

    /// The caller of server `index` (for its URL and for describing its errors).
    pub(super) fn caller(&self, index: usize) -> &HttpCaller {
        &self.servers[index].caller
    }

    /// How many servers there are.
    pub(super) fn len(&self) -> usize {
        self.servers.len()
    }

    /// Sends the request `build` makes under the shared retry rules, each attempt to the
    /// server [`choose`] picks, until one answers with a success status: the response (body
    /// unread) and the slot it holds on its server.
    pub(super) async fn send<F>(
        &self,
        what: &'static str,
        deadline: Instant,
        build: F,
    ) -> Result<(Response, Lease), CallError>
    where
        F: Fn(&Client, &Endpoint) -> RequestBuilder,
    {
        let policy = self.servers[0].caller.policy();
        with_retries(what, policy, deadline, || self.attempt(&build)).await
    }

    /// One attempt on the chosen server; tells the pool how it went.
    async fn attempt<F>(&self, build: &F) -> Attempt<(Response, Lease)>
    where
        F: Fn(&Client, &Endpoint) -> RequestBuilder,
    {
        let lease = self.lease().await;
        let index = lease.index;
        let caller = &self.servers[index].caller;
        match caller
            .attempt(build(caller.client(), caller.endpoint()))
            .await
        {
            Attempt::Success(response) => {
                self.shared.succeeded(index);
                Attempt::Success((response, lease))
            }
            // 429: busy, not broken — retried after the pause it asked for, on whichever
            // server is least loaded then.
            Attempt::Retryable {
                error: error @ CallError::Status { status: 429, .. },
                retry_after,
            } => Attempt::Retryable { error, retry_after },
            Attempt::Retryable { error, retry_after } => {
                drop(lease);
                if self.shared.failed(index, Instant::now()) {
                    Attempt::Failover(error)
                } else {
                    Attempt::Retryable { error, retry_after }
                }
            }
            // A connection that broke before the answer (the server died mid-request): final
            // for a lone server, as it always was; another server can still answer.
            Attempt::Fatal(error @ CallError::Unavailable(_)) => {
                drop(lease);
                if self.shared.failed(index, Instant::now()) {
                    Attempt::Failover(error)
                } else {
                    Attempt::Fatal(error)
                }
            }
            Attempt::Fatal(error) | Attempt::Failover(error) => Attempt::Fatal(error),
        }
    }

    /// A slot on the server [`choose`] picks, waiting for one to free if every candidate is
    /// at its limit (the caller's deadline bounds the wait). Starts the probes that are due.
    async fn lease(&self) -> Lease {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (taken, due) = {
                let mut states = lock(&self.shared.states);
                let due = if states.len() > 1 {
                    due_for_probe(&mut states, Instant::now())
                } else {
                    Vec::new()
                };
                let taken = choose(&states, self.shared.limit).map(|index| {
                    states[index].outstanding += 1;
                    (index, states[index].outstanding)
                });
                (taken, due)
            };
            for index in due {
                self.probe(index);
            }
            if let Some((index, outstanding)) = taken {
                metrics::set_llm_server_outstanding(&Shared::label(index), outstanding);
                return Lease {
                    shared: Arc::clone(&self.shared),
                    index,
                };
            }
            changed.await;
        }
    }

    /// Probes server `index` in the background: only a `2xx` answer to `GET {base}/models`
    /// brings it back; anything else — a `404` from a wrong base path, a `401` from a gateway
    /// that wants a key, a `5xx`, no answer — doubles its back-off (such a server could not
    /// answer a completion either).
    fn probe(&self, index: usize) {
        let shared = Arc::clone(&self.shared);
        let server = self.servers[index].clone();
        let mut probes = lock(&self.probes);
        while probes.try_join_next().is_some() {}
        probes.spawn(async move {
            match server.caller.status_of(&server.models, PROBE_TIMEOUT).await {
                Ok(status) if status.is_success() => shared.succeeded(index),
                outcome => {
                    tracing::debug!(server = index, ?outcome, "LLM server probe failed");
                    shared.failed(index, Instant::now());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(outstanding: usize) -> ServerState {
        ServerState {
            outstanding,
            ..ServerState::new()
        }
    }

    fn down(outstanding: usize, until: Instant) -> ServerState {
        ServerState {
            outstanding,
            health: Health::Down { until },
            failures: 1,
        }
    }

    #[test]
    fn the_healthy_server_with_the_fewest_outstanding_requests_is_chosen() {
        assert_eq!(choose(&[up(2), up(1), up(3)], 4), Some(1));
        assert_eq!(choose(&[up(1), up(1)], 4), Some(0), "ties go to the first");
    }

    #[test]
    fn a_server_at_its_limit_is_skipped_and_all_full_means_wait() {
        assert_eq!(choose(&[up(4), up(3)], 4), Some(1));
        assert_eq!(choose(&[up(4), up(4)], 4), None);
    }

    #[test]
    fn a_server_that_is_out_is_not_chosen_while_another_is_healthy_even_when_it_is_full() {
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(choose(&[down(0, later), up(2)], 4), Some(1));
        assert_eq!(choose(&[down(0, later), up(4)], 4), None);
    }

    #[test]
    fn when_every_server_is_out_the_one_back_soonest_is_the_last_resort() {
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later = now + Duration::from_secs(8);
        assert_eq!(choose(&[down(0, later), down(0, soon)], 4), Some(1));
        assert_eq!(choose(&[down(0, later), down(4, soon)], 4), Some(0));
    }

    #[test]
    fn only_servers_whose_back_off_is_over_are_probed_once() {
        let now = Instant::now();
        let mut states = vec![
            down(0, now - Duration::from_millis(1)),
            down(0, now + Duration::from_secs(1)),
            up(0),
        ];
        assert_eq!(due_for_probe(&mut states, now), [0]);
        assert_eq!(states[0].health, Health::Probing);
        assert!(
            due_for_probe(&mut states, now).is_empty(),
            "already probing"
        );
    }

    #[test]
    fn a_failed_server_is_out_for_1_s_doubling_to_60_s_by_default() {
        let backoff = ServerBackoff::default();
        let secs: Vec<u64> = (1..=9).map(|f| backoff.after(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn the_back_off_doubles_per_failure_up_to_its_cap() {
        let backoff = ServerBackoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let after: Vec<u128> = (1..=5).map(|f| backoff.after(f).as_millis()).collect();
        assert_eq!(after, [100, 200, 400, 500, 500]);
        assert_eq!(backoff.after(u32::MAX), Duration::from_millis(500));
        assert_eq!(backoff.after(0), Duration::from_millis(100));
    }

    #[test]
    fn failures_take_a_server_out_with_a_growing_back_off_and_a_success_brings_it_back() {
        let shared = Shared {
            states: Mutex::new(vec![ServerState::new(); 2]),
            changed: Notify::new(),
            limit: 4,
            backoff: ServerBackoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(3),
            },
        };
        let t0 = Instant::now();
        assert!(shared.failed(0, t0), "server 1 is still up");
        assert_eq!(
            lock(&shared.states)[0].back_at(),
            Some(t0 + Duration::from_secs(1))
        );
        assert!(!shared.failed(1, t0), "nobody left to fail over to");
        shared.failed(0, t0);
        assert_eq!(
            lock(&shared.states)[0].back_at(),
            Some(t0 + Duration::from_secs(2))
        );
        shared.succeeded(0);
        let states = lock(&shared.states);
        assert_eq!(states[0].health, Health::Up);
        assert_eq!(states[0].failures, 0);
    }

    #[test]
    fn a_lone_server_is_never_taken_out() {
        let shared = Shared {
            states: Mutex::new(vec![ServerState::new()]),
            changed: Notify::new(),
            limit: 4,
            backoff: ServerBackoff::default(),
        };
        assert!(!shared.failed(0, Instant::now()));
        assert_eq!(lock(&shared.states)[0].health, Health::Up);
    }
}
