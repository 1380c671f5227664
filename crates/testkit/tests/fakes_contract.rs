//! The storage contract suite against the in-memory fakes, so application tests that use
//! them rely on exactly the promises the real backends keep.

use std::sync::Arc;

use butler_testkit::contract::Storage;
use butler_testkit::fakes::{InMemoryFacts, InMemoryInbox, InMemoryMemory, InMemoryProfiles};

async fn fakes() -> Storage {
    Storage::new(
        Arc::new(InMemoryProfiles::default()),
        Arc::new(InMemoryMemory::default()),
        Arc::new(InMemoryFacts::default()),
        Arc::new(InMemoryInbox::default()),
    )
}

butler_testkit::storage_contract_suite!(fakes());
