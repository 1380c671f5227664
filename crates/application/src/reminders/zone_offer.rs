//! Learning the user's time zone from the conversation, confirmed first.
//!
//! When a private message says where the user lives («Я живу в Перми»), or a stored fact does
//! (the extractor's `home_city`: «Живёт в Перми»), the butler proposes the city's zone once
//! («Вы в Перми — ставлю часовой пояс Екатеринбург, UTC+5?») and sets it only when the user
//! says yes. Each zone is proposed once, whatever the answer (`time_zone_offered` in the
//! profile), and an unknown city gets no proposal
//! ([`places`](butler_domain::reminder::places)).

use std::sync::Arc;

use butler_domain::ports::{Clock, FactRepository, ProfileStoreError, UserProfileRepository};
use butler_domain::profile::Language;
use butler_domain::reminder::places::{any_city_in, lives_in, Place};
use butler_domain::reminder::UserTimeZone;
use butler_domain::{FactKind, UserId, UserProfile};

use super::texts::unavailable;

/// A proposal to make: the zone (for the answer buttons) and the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneOffer {
    /// The zone proposed.
    pub zone: UserTimeZone,
    /// The question, in the user's language.
    pub question: String,
}

/// Proposes a zone learned from the conversation and applies the user's answer.
pub struct ZoneOfferUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    facts: Option<Arc<dyn FactRepository>>,
    clock: Arc<dyn Clock>,
    default_zone: UserTimeZone,
}

impl std::fmt::Debug for ZoneOfferUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneOfferUseCase")
            .field("default_zone", &self.default_zone)
            .field("facts", &self.facts.is_some())
            .finish_non_exhaustive()
    }
}

/// How many of the user's newest facts are looked through for a home city.
const FACTS_LOOKED_AT: usize = 50;

impl ZoneOfferUseCase {
    /// A use case over the profiles; `default_zone` is the operator's `DEFAULT_TIME_ZONE`.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        clock: Arc<dyn Clock>,
        default_zone: UserTimeZone,
    ) -> Self {
        Self {
            profiles,
            facts: None,
            clock,
            default_zone,
        }
    }

    /// Also looks at the user's stored facts for a home city.
    #[must_use]
    pub fn with_facts(mut self, facts: Arc<dyn FactRepository>) -> Self {
        self.facts = Some(facts);
        self
    }

    /// The proposal to make after `text` from `user`, if any: the message (or, while the user
    /// has no zone of their own, a stored fact) says where they live, that place's zone is not
    /// theirs already and was never proposed. The proposal is recorded before it is returned,
    /// so it is made once. Never fails: a storage problem means no proposal.
    pub async fn offer(&self, user: UserId, text: &str) -> Option<ZoneOffer> {
        let profile = match self.profiles.get(user).await {
            Ok(Some(profile)) => profile,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, "profile unavailable; no time zone proposal");
                return None;
            }
        };
        let place = match lives_in(text) {
            Some(place) => place,
            None if profile.time_zone.is_none() && profile.time_zone_offered.is_none() => {
                self.home_from_facts(user).await?
            }
            None => return None,
        };
        let current = profile.zone_or(&self.default_zone);
        if current == place.zone || profile.time_zone_offered.as_ref() == Some(&place.zone) {
            return None;
        }
        let zone = place.zone.clone();
        let recorded = self
            .change(user, |p| p.time_zone_offered = Some(zone.clone()))
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "time zone proposal not recorded; not made");
            return None;
        }
        tracing::info!(zone = %place.zone, "time zone proposed");
        Some(ZoneOffer {
            question: question(profile.language, &place, self.clock.now()),
            zone: place.zone,
        })
    }

    /// Applies the user's answer to the proposal of `zone` (an IANA name from the button);
    /// the reply to show. Only the zone last proposed to the user can be accepted.
    pub async fn answer(&self, user: UserId, zone: &str, accepted: bool) -> String {
        let profile = match self.profiles.get(user).await {
            Ok(Some(profile)) => profile,
            Ok(None) | Err(_) => return unavailable(Language::default()).to_owned(),
        };
        let language = profile.language;
        let Ok(zone) = UserTimeZone::new(zone) else {
            return stale(language).to_owned();
        };
        if profile.time_zone_offered.as_ref() != Some(&zone) {
            return stale(language).to_owned();
        }
        let now = self.clock.now();
        if !accepted {
            let kept = profile.zone_or(&self.default_zone);
            return declined(language, &kept, now);
        }
        let chosen = zone.clone();
        match self
            .change(user, move |p| p.time_zone = Some(chosen.clone()))
            .await
        {
            Ok(_) => {
                tracing::info!(zone = %zone, "time zone set by the user");
                accepted_text(language, &zone, now)
            }
            Err(error) => {
                tracing::warn!(%error, "time zone not saved");
                unavailable(language).to_owned()
            }
        }
    }

    /// The home city in the user's newest facts: a place fact that says they live there, or
    /// whose key says it is their home.
    async fn home_from_facts(&self, user: UserId) -> Option<Place> {
        let facts = self.facts.as_ref()?;
        let current = match facts.current(user, FACTS_LOOKED_AT).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(%error, "facts unavailable; no time zone proposal");
                return None;
            }
        };
        current
            .iter()
            .filter(|f| f.kind == FactKind::Place)
            .find_map(|f| {
                let key = f.key.as_str();
                let home_key = ["home", "city", "live", "residence", "город", "жив"]
                    .iter()
                    .any(|w| key.contains(w));
                lives_in(&f.text).or_else(|| home_key.then(|| any_city_in(&f.text)).flatten())
            })
    }

    /// Applies `edit` to the stored profile ([`super::edit_profile`]).
    async fn change(
        &self,
        user: UserId,
        edit: impl Fn(&mut UserProfile),
    ) -> Result<UserProfile, ProfileStoreError> {
        super::edit_profile(self.profiles.as_ref(), self.clock.as_ref(), user, edit).await
    }
}

/// The zone in words: its city in Russian when the table knows it, else its IANA city.
fn zone_name(language: Language, zone: &UserTimeZone) -> String {
    let city = zone.name().rsplit('/').next().unwrap_or(zone.name());
    let ru = match zone.name() {
        "Europe/Moscow" => "Москва",
        "Europe/Kaliningrad" => "Калининград",
        "Europe/Samara" => "Самара",
        "Europe/Volgograd" => "Волгоград",
        "Europe/Saratov" => "Саратов",
        "Europe/Ulyanovsk" => "Ульяновск",
        "Europe/Astrakhan" => "Астрахань",
        "Asia/Yekaterinburg" => "Екатеринбург",
        "Asia/Omsk" => "Омск",
        "Asia/Novosibirsk" => "Новосибирск",
        "Asia/Tomsk" => "Томск",
        "Asia/Barnaul" => "Барнаул",
        "Asia/Novokuznetsk" => "Новокузнецк",
        "Asia/Krasnoyarsk" => "Красноярск",
        "Asia/Irkutsk" => "Иркутск",
        "Asia/Chita" => "Чита",
        "Asia/Yakutsk" => "Якутск",
        "Asia/Vladivostok" => "Владивосток",
        "Asia/Sakhalin" => "Сахалин",
        "Asia/Magadan" => "Магадан",
        "Asia/Kamchatka" => "Камчатка",
        "Europe/Minsk" => "Минск",
        "Europe/Kyiv" | "Europe/Kiev" => "Киев",
        _ => "",
    };
    match language {
        Language::Ru if !ru.is_empty() => ru.to_owned(),
        _ => city.replace('_', " "),
    }
}

fn question(language: Language, place: &Place, now: time::OffsetDateTime) -> String {
    let zone = zone_name(language, &place.zone);
    let offset = place.zone.offset_text(now);
    match language {
        Language::Ru => format!(
            "Вы в {} — ставлю часовой пояс {zone}, {offset}? Напоминания буду считать по нему.",
            place.name_in
        ),
        // The place as the user wrote it when it was in Latin letters, else the zone's city.
        Language::En => format!(
            "You are in {} — shall I set your time zone to {zone}, {offset}? Reminders will follow it.",
            if place.said.is_ascii() {
                place.said.clone()
            } else {
                zone.clone()
            }
        ),
    }
}

fn accepted_text(language: Language, zone: &UserTimeZone, now: time::OffsetDateTime) -> String {
    let name = zone_name(language, zone);
    let offset = zone.offset_text(now);
    match language {
        Language::Ru => format!(
            "Готово, сэр: часовой пояс {name} ({offset}). Новые напоминания — по нему; уже назначенные придут в то же мгновение (/reminders покажет их по вашим часам)."
        ),
        Language::En => format!(
            "Done, sir: time zone {name} ({offset}). New reminders follow it; those already set come at the same moment (/reminders shows them on your clock)."
        ),
    }
}

fn declined(language: Language, kept: &UserTimeZone, now: time::OffsetDateTime) -> String {
    let name = zone_name(language, kept);
    let offset = kept.offset_text(now);
    match language {
        Language::Ru => format!("Как скажете, сэр: часовой пояс прежний — {name} ({offset})."),
        Language::En => format!("As you wish, sir: the time zone stays {name} ({offset})."),
    }
}

fn stale(language: Language) -> &'static str {
    match language {
        Language::Ru => "Этот вопрос уже неактуален, сэр.",
        Language::En => "That question no longer stands, sir.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_named_in_russian_where_known_and_by_their_city_otherwise() {
        let z = |n| UserTimeZone::new(n).unwrap();
        assert_eq!(
            zone_name(Language::Ru, &z("Asia/Yekaterinburg")),
            "Екатеринбург"
        );
        assert_eq!(
            zone_name(Language::En, &z("Asia/Yekaterinburg")),
            "Yekaterinburg"
        );
        assert_eq!(zone_name(Language::Ru, &z("America/New_York")), "New York");
    }

    #[test]
    fn an_english_proposal_names_the_place_as_the_user_wrote_it_in_latin_letters() {
        let now = time::macros::datetime!(2026-12-07 12:00 UTC);
        let perm = lives_in("I live in Perm").unwrap();
        assert_eq!(
            question(Language::En, &perm, now),
            "You are in Perm — shall I set your time zone to Yekaterinburg, UTC+5? Reminders will follow it."
        );
        let perm = lives_in("я живу в Перми").unwrap();
        assert!(question(Language::En, &perm, now).starts_with("You are in Yekaterinburg —"));
    }
}
