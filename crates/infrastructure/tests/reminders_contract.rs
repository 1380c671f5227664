//! The reminder contract suite against SQLite (a fresh file per test), a real MongoDB-wire
//! server (one database per test) and the in-memory fake.

use std::sync::Arc;

use butler_testkit::contract::ReminderStorage;

mod sqlite {
    use super::*;
    use butler_infrastructure::sqlite::{SqliteOptions, SqliteStore};

    async fn sqlite() -> ReminderStorage {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = SqliteStore::open(SqliteOptions::at(dir.path().join("butler.db")))
            .await
            .expect("open a fresh SQLite database");
        ReminderStorage::new(Arc::new(store.reminders())).keeping(dir)
    }

    butler_testkit::reminder_contract_suite!(sqlite());
}

mod fake {
    use super::*;
    use butler_testkit::fakes::InMemoryReminders;

    async fn fake() -> ReminderStorage {
        ReminderStorage::new(Arc::new(InMemoryReminders::default()))
    }

    butler_testkit::reminder_contract_suite!(fake());
}

mod mongo {
    use super::*;
    use butler_infrastructure::mongo::{MongoOptions, MongoStore};
    use butler_testkit::services::mongo::{
        shared_mongo, unique_database_name, STAND_IN_OPERATION_TIMEOUT,
    };

    async fn mongo() -> ReminderStorage {
        let server = shared_mongo().await.unwrap_or_else(|e| panic!("{e}"));
        let options = MongoOptions {
            database: Some(unique_database_name("reminders")),
            operation_timeout: STAND_IN_OPERATION_TIMEOUT,
            ..MongoOptions::default()
        };
        let store = MongoStore::connect(server.uri(), options)
            .await
            .expect("connect to the test MongoDB");
        ReminderStorage::new(Arc::new(store.reminders())).keeping(store)
    }

    butler_testkit::reminder_contract_suite!(mongo());
}
