//! Criterion benches of prompt assembly: `PersonalizationService::build` with a full memory
//! (20 events and a summary), and the whole pre-model step — profile, recent events and count
//! read from SQLite holding 10,000 events for the user, then the prompt built.
//!
//! `cargo bench -p butler-bench` (add `-- --quick` for a fast pass).

use butler_bench::backend::{Backend, StoreEnv};
use butler_bench::{data, prompt};
use butler_domain::UserId;
use butler_factory::wiring;
use criterion::{criterion_group, criterion_main, Criterion};

fn build(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let service = rt
        .block_on(prompt::production_service())
        .expect("production prompt builder");
    let (profile, slice) = prompt::full_memory(UserId::new(7));
    let message = prompt::new_message();
    c.bench_function("prompt build, 20 events + summary", |b| {
        b.to_async(&rt)
            .iter(|| service.build(&profile, &slice, &message));
    });
}

fn read_and_build(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let store = rt
        .block_on(StoreEnv::fresh(Backend::Sqlite, "criterion"))
        .expect("a SQLite file");
    let settings = store.settings(&[]).expect("settings");
    let storage = rt
        .block_on(wiring::open_storage(&settings))
        .expect("open SQLite");
    let user = UserId::new(1);
    rt.block_on(data::seed_user(
        &storage.profiles,
        &storage.memory,
        user,
        10_000,
        true,
    ))
    .expect("seed 10,000 events");
    let service = rt
        .block_on(prompt::production_service())
        .expect("production prompt builder");
    let message = prompt::new_message();
    c.bench_function("prompt read + build, SQLite with 10k events", |b| {
        b.to_async(&rt).iter(|| {
            prompt::read_and_build(&service, &storage.profiles, &storage.memory, user, &message)
        });
    });
}

criterion_group!(benches, build, read_and_build);
criterion_main!(benches);
