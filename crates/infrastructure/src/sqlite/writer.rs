//! The writer thread: every write of this process runs on one thread that owns one connection,
//! and the writes queued while it was busy run together in one transaction (group commit).
//!
//! Why: a write used to take the pool's async writer lock, hop to the blocking pool, commit
//! its own transaction and hop back — and the lock was held until the waiting task had been
//! scheduled again. Under many users that meant a commit (WAL frames for every page touched,
//! file locks, with `synchronous=FULL` an fsync) per write and two thread wake-ups per write
//! inside the critical section. Here, whatever is queued when the thread is free —
//! at most [`MAX_GROUP`] writes — runs in one `BEGIN IMMEDIATE … COMMIT`, each write inside a
//! savepoint of its own:
//!
//! - **Isolation**: a write that fails is rolled back to its savepoint and answered with its
//!   error at once; the others of its group go on.
//! - **Durability**: a write is answered only after its group committed. If the commit fails,
//!   every write of the group gets the error (nothing of them is stored). A write's nested
//!   "transaction" is a savepoint (`Connection::savepoint`), so its own commit only releases
//!   the savepoint.
//! - **Order**: writes run in the order they were queued, as with the lock before; a caller
//!   that waits for its write before the next keeps its order.
//! - **No wait to fill a group**: a lone write commits at once; groups form only when writes
//!   arrive faster than they commit.
//! - **Other processes** (`memory-worker`, `profile_admin`) still serialise with this one on
//!   SQLite's own lock: the group's `BEGIN IMMEDIATE` waits up to `busy_timeout` for it. If
//!   the lock is still held then, every write of the group fails with that error at once
//!   (their callers retry) rather than each waiting `busy_timeout` again in turn.
//!
//! Should SQLite roll the whole transaction back by itself after an error (it does for a full
//! disk, an I/O error or no memory), the writes of the group that had run get that error too,
//! and the rest of the group starts a new transaction.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::Fault;

/// Most writes committed in one transaction: bounds how long the first of a group waits for
/// the last one's work.
pub(super) const MAX_GROUP: usize = 64;

/// A queued write: run it (in the group's transaction), or fail it unrun.
trait Job: Send {
    /// Runs the write; `Ok` if it succeeded (its answer then waits for the commit).
    fn run(self: Box<Self>, conn: &mut Connection) -> Result<Box<dyn Settle>, ()>;
    /// Answers the write with `fault` without running it.
    fn fail(self: Box<Self>, fault: Fault);
}

/// A write that ran: answered once its group's commit is known.
trait Settle: Send {
    /// `None`: committed, answer the write's result; `Some`: the commit failed.
    fn settle(self: Box<Self>, commit_failed: Option<Fault>);
}

struct Write<F, T> {
    f: F,
    answer: oneshot::Sender<Result<T, Fault>>,
}

struct Ran<T> {
    value: T,
    answer: oneshot::Sender<Result<T, Fault>>,
}

impl<F, T> Job for Write<F, T>
where
    F: FnOnce(&mut Connection) -> Result<T, Fault> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &mut Connection) -> Result<Box<dyn Settle>, ()> {
        let Self { f, answer } = *self;
        match f(conn) {
            Ok(value) => Ok(Box::new(Ran { value, answer })),
            Err(fault) => {
                // The caller may have stopped waiting; nothing to do then.
                let _ = answer.send(Err(fault));
                Err(())
            }
        }
    }

    fn fail(self: Box<Self>, fault: Fault) {
        let _ = self.answer.send(Err(fault));
    }
}

impl<T: Send> Settle for Ran<T> {
    fn settle(self: Box<Self>, commit_failed: Option<Fault>) {
        let _ = self.answer.send(match commit_failed {
            None => Ok(self.value),
            Some(fault) => Err(fault),
        });
    }
}

/// The handle the pool keeps: queues writes for the thread, which ends when it is dropped.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the thread (`sqlite-writer`) with `conn`, the connection the store was opened
    /// with, so that no write depends on opening the file again (its directory may have been
    /// removed or its mount lost since). Sets `written` after every commit.
    pub(super) fn start(mut conn: Connection, written: Arc<AtomicBool>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || serve(&queue, &mut conn, &written))?;
        Ok(Self { jobs })
    }

    /// Runs `f` in the next group transaction; answers once that committed.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, Fault>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Box::new(Write { f, answer }))
            .map_err(|_| Fault::Task("the SQLite writer thread has stopped".into()))?;
        answered
            .await
            .map_err(|_| Fault::Task("the write panicked on the SQLite writer thread".into()))?
    }
}

/// The writer thread's name (the benchmark counts its CPU time as the bot's).
pub const THREAD_NAME: &str = "sqlite-writer";

/// The thread: takes what is queued, runs it as one group, until every sender is gone.
fn serve(queue: &mpsc::Receiver<Box<dyn Job>>, conn: &mut Connection, written: &AtomicBool) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(conn, group);
        written.store(true, Ordering::Release);
    }
}

/// The largest group run so far in this process (tests check that groups form).
#[cfg(test)]
static LARGEST_GROUP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs `group` in as few transactions as SQLite lets it (one, unless it rolled one back).
fn run_group(conn: &mut Connection, group: Vec<Box<dyn Job>>) {
    #[cfg(test)]
    LARGEST_GROUP.fetch_max(group.len(), Ordering::Relaxed);
    let mut ran: Vec<Box<dyn Settle>> = Vec::with_capacity(group.len());
    let mut open = false;
    let mut jobs = group.into_iter();
    while let Some(job) = jobs.next() {
        if !open {
            if let Err(error) = exec(conn, "BEGIN IMMEDIATE") {
                // Another process held the lock for all of `busy_timeout` (or the file cannot
                // be written): each write left in the group would wait as long again, one
                // after the other. They all get the error now, and their callers retry.
                for rest in jobs {
                    rest.fail(copy(&error));
                }
                job.fail(Fault::Db(error));
                return;
            }
            open = true;
        }
        if let Err(error) = exec(conn, "SAVEPOINT write") {
            job.fail(Fault::Db(error));
            abandon(conn, &mut ran, &mut open);
            continue;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| job.run(conn)));
        match outcome {
            Ok(Ok(settle)) => match exec(conn, "RELEASE write") {
                Ok(()) => ran.push(settle),
                Err(error) => {
                    settle.settle(Some(Fault::Db(error)));
                    abandon(conn, &mut ran, &mut open);
                }
            },
            // Failed (answered already) or panicked (its answer dropped): undo what it did.
            Ok(Err(())) | Err(_) => {
                if conn.is_autocommit() {
                    // SQLite rolled the whole transaction back: the group's earlier writes too.
                    fail_all(
                        &mut ran,
                        "rolled back by SQLite after another write of its group failed",
                    );
                    open = false;
                } else if conn
                    .execute_batch("ROLLBACK TO write; RELEASE write")
                    .is_err()
                {
                    abandon(conn, &mut ran, &mut open);
                }
            }
        }
    }
    if open {
        match exec(conn, "COMMIT") {
            Ok(()) => {
                for settle in ran {
                    settle.settle(None);
                }
            }
            Err(error) => {
                let error = Fault::Db(error);
                let detail = error.detail("commit");
                for settle in ran {
                    settle.settle(Some(Fault::Task(detail.clone())));
                }
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
        }
    }
}

/// Runs one statement without a result, prepared once per connection.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Gives up the open transaction: rolls it back and fails the writes that ran in it.
fn abandon(conn: &Connection, ran: &mut Vec<Box<dyn Settle>>, open: &mut bool) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    fail_all(
        ran,
        "rolled back after a savepoint of its group could not be set or released",
    );
    *open = false;
}

fn fail_all(ran: &mut Vec<Box<dyn Settle>>, why: &str) {
    for settle in ran.drain(..) {
        settle.settle(Some(Fault::Task(format!("the write was {why}"))));
    }
}

/// A fault for each write that `error` fails (rusqlite's error is not `Clone`).
fn copy(error: &rusqlite::Error) -> Fault {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            Fault::Db(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => Fault::Task(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Access, Fault, Pool, SqliteOptions};

    fn pool(dir: &tempfile::TempDir) -> Arc<Pool> {
        let options = SqliteOptions::at(dir.path().join("writer.db"));
        Arc::new(Pool::open(options).expect("open"))
    }

    async fn setup(pool: &Arc<Pool>) {
        pool.run(Access::Write, |conn| {
            conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
            Ok(())
        })
        .await
        .expect("create");
    }

    async fn rows(pool: &Arc<Pool>) -> Vec<(i64, String)> {
        pool.run(Access::Read, |conn| {
            let mut stmt = conn.prepare("SELECT k, v FROM t ORDER BY k")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .expect("read")
    }

    /// Queues `n` writes at once (so they form groups), where every write whose key is in
    /// `failing` inserts a row and then fails, and `panicking` panics after inserting.
    async fn burst(
        pool: &Arc<Pool>,
        n: i64,
        failing: &[i64],
        panicking: i64,
    ) -> Vec<Result<i64, Fault>> {
        let writes = (0..n).map(|k| {
            let pool = Arc::clone(pool);
            let fails = failing.contains(&k);
            async move {
                pool.run(Access::Write, move |conn| {
                    let tx = conn.savepoint()?;
                    tx.execute("INSERT INTO t (k, v) VALUES (?1, 'first')", [k])?;
                    if k == panicking {
                        panic!("a write that panics");
                    }
                    if fails {
                        // A second insert of the same key: a constraint error after a write.
                        tx.execute("INSERT INTO t (k, v) VALUES (?1, 'again')", [k])?;
                    }
                    tx.commit()?;
                    Ok(k)
                })
                .await
            }
        });
        futures::future::join_all(writes).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_or_panicking_write_is_undone_alone_and_the_rest_of_its_group_is_stored() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = pool(&dir);
        setup(&pool).await;
        let failing = [3, 40, 41, 199];
        let results = burst(&pool, 200, &failing, 77).await;
        assert!(
            super::LARGEST_GROUP.load(std::sync::atomic::Ordering::Relaxed) > 1,
            "the burst formed groups"
        );
        for (k, result) in (0_i64..).zip(&results) {
            if failing.contains(&k) || k == 77 {
                assert!(result.is_err(), "write {k} should have failed");
            } else {
                assert_eq!(result.as_ref().ok(), Some(&k), "write {k}");
            }
        }
        let stored = rows(&pool).await;
        let expected: Vec<(i64, String)> = (0..200)
            .filter(|k| !failing.contains(k) && *k != 77)
            .map(|k| (k, "first".to_owned()))
            .collect();
        assert_eq!(stored, expected, "the failed writes left nothing behind");
        // The thread survived the panic: a later write goes through.
        let later = burst(&pool, 1, &[], -1).await;
        assert!(later[0].is_err(), "key 0 exists: the insert fails cleanly");
        pool.run(Access::Write, |conn| {
            conn.execute("INSERT INTO t (k, v) VALUES (1000, 'after')", [])?;
            Ok(())
        })
        .await
        .expect("a write after the panic");
        assert_eq!(rows(&pool).await.len(), expected.len() + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_of_one_caller_keep_their_order_and_are_readable_once_answered() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = pool(&dir);
        setup(&pool).await;
        // Noise from other callers so that groups form.
        let noise = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { burst(&pool, 300, &[], -1).await })
        };
        for k in 1000..1100_i64 {
            pool.run(Access::Write, move |conn| {
                conn.execute(
                    "INSERT INTO t (k, v) VALUES (?1, (SELECT COUNT(*) FROM t WHERE k >= 1000))",
                    [k],
                )?;
                Ok(())
            })
            .await
            .expect("write");
            // Answered means committed: another connection sees it.
            let seen = pool
                .run(Access::Read, move |conn| {
                    Ok(conn.query_row("SELECT v FROM t WHERE k = ?1", [k], |r| {
                        r.get::<_, String>(0)
                    })?)
                })
                .await
                .expect("read");
            assert_eq!(
                seen,
                (k - 1000).to_string(),
                "write {k} saw every earlier one"
            );
        }
        assert!(noise.await.expect("noise").iter().all(Result::is_ok));
    }

    /// The writer's connection is the one the store was opened with, not one opened at the
    /// first write: a benchmark that removed the store's directory right after opening it
    /// once left every write of the process failing ("unable to open database file").
    #[tokio::test]
    async fn the_writer_connection_is_opened_with_the_store_not_at_its_first_write() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = pool(&dir);
        std::fs::remove_dir_all(dir.path()).expect("remove the directory");
        setup(&pool).await;
        pool.run(Access::Write, |conn| {
            conn.execute("INSERT INTO t (k, v) VALUES (1, 'one')", [])?;
            Ok(())
        })
        .await
        .expect("a write after the directory went");
    }

    /// While another process holds the database's write lock past `busy_timeout`, the writes
    /// queued meanwhile fail together after one wait each group, not one wait each — ten
    /// writes one after the other would take ten.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_behind_a_lock_held_elsewhere_fail_together_not_one_wait_each() {
        let dir = tempfile::tempdir().expect("dir");
        let busy = std::time::Duration::from_millis(300);
        let options = SqliteOptions {
            busy_timeout: busy,
            ..SqliteOptions::at(dir.path().join("writer.db"))
        };
        let pool = Arc::new(Pool::open(options).expect("open"));
        setup(&pool).await;
        // Another process's write transaction.
        let other = rusqlite::Connection::open(dir.path().join("writer.db")).expect("other");
        other.execute_batch("BEGIN IMMEDIATE").expect("the lock");
        let started = std::time::Instant::now();
        let writes: Vec<_> = (0..10_i64)
            .map(|k| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    pool.run(Access::Write, move |conn| {
                        conn.execute("INSERT INTO t (k, v) VALUES (?1, 'locked')", [k])?;
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        for write in writes {
            let result = write.await.expect("task");
            assert!(
                matches!(result, Err(Fault::Db(_))),
                "a write got through the lock: {:?}",
                result.err()
            );
        }
        let took = started.elapsed();
        assert!(
            took < busy * 8,
            "ten writes behind the lock took {took:?}, {busy:?} of busy_timeout each"
        );
        other.execute_batch("COMMIT").expect("unlock");
        assert!(rows(&pool).await.is_empty(), "nothing of them stored");
        pool.run(Access::Write, |conn| {
            conn.execute("INSERT INTO t (k, v) VALUES (1, 'after')", [])?;
            Ok(())
        })
        .await
        .expect("the writer goes on once the lock is free");
    }
}
