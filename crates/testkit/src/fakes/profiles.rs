//! An in-memory profile store with compare-and-set semantics identical to the real adapters.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use butler_domain::ports::{ProfilePage, ProfileStoreError, UserProfileRepository};
use butler_domain::{UserId, UserProfile};

use super::Outage;

/// Profiles in a map.
#[derive(Debug, Default)]
pub struct InMemoryProfiles {
    profiles: Mutex<BTreeMap<UserId, UserProfile>>,
    /// While down, every operation fails with `Unavailable`.
    pub outage: Outage,
}

impl InMemoryProfiles {
    fn check(&self, operation: &'static str) -> Result<(), ProfileStoreError> {
        if self.outage.is_down() {
            return Err(ProfileStoreError::Unavailable {
                operation,
                detail: "fake outage".to_owned(),
            });
        }
        Ok(())
    }

    /// Number of stored profiles.
    #[must_use]
    pub fn len(&self) -> usize {
        self.profiles.lock().expect("profiles mutex").len()
    }

    /// Whether no profile is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl UserProfileRepository for InMemoryProfiles {
    async fn get(&self, user_id: UserId) -> Result<Option<UserProfile>, ProfileStoreError> {
        self.check("get")?;
        Ok(self
            .profiles
            .lock()
            .expect("profiles mutex")
            .get(&user_id)
            .cloned())
    }

    async fn get_or_create(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        self.check("get_or_create")?;
        let mut profiles = self.profiles.lock().expect("profiles mutex");
        let profile = profiles.entry(user_id).or_insert_with(|| {
            let mut p = UserProfile::default_for(user_id);
            p.version = 1;
            p
        });
        Ok(profile.clone())
    }

    async fn save(&self, profile: &UserProfile) -> Result<UserProfile, ProfileStoreError> {
        self.check("save")?;
        profile.validate()?;
        let mut profiles = self.profiles.lock().expect("profiles mutex");
        let stored_version = profiles.get(&profile.user_id).map_or(0, |p| p.version);
        if stored_version != profile.version {
            return Err(ProfileStoreError::VersionConflict {
                user_id: profile.user_id,
                expected: profile.version,
            });
        }
        let mut next = profile.clone();
        next.version += 1;
        profiles.insert(profile.user_id, next.clone());
        Ok(next)
    }

    async fn reset(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        self.check("reset")?;
        let mut profiles = self.profiles.lock().expect("profiles mutex");
        let stored = profiles.get(&user_id);
        let version = stored.map_or(0, |p| p.version);
        let limits = stored.map(|p| p.limits).unwrap_or_default();
        let mut fresh = UserProfile::default_for(user_id);
        fresh.version = version + 1;
        fresh.limits = limits;
        profiles.insert(user_id, fresh.clone());
        Ok(fresh)
    }

    async fn list(&self, page: ProfilePage) -> Result<Vec<UserProfile>, ProfileStoreError> {
        self.check("list")?;
        let profiles = self.profiles.lock().expect("profiles mutex");
        Ok(profiles
            .values()
            .filter(|p| page.after.is_none_or(|after| p.user_id > after))
            .take(page.limit)
            .cloned()
            .collect())
    }
}
