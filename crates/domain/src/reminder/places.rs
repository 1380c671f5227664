//! Where a user says they live, and the time zone that stands for — so the butler can propose
//! the zone (and set it only once the user agrees).
//!
//! Two sources of names, both small and predictable:
//! - [`CITIES`]: common Russian, CIS and world cities in the forms people write them in
//!   Russian («Пермь», «в Перми») and English, each with its IANA zone;
//! - the tz database's own names (jiff's bundled copy): an IANA name itself
//!   («Asia/Tokyo») or its city written out in English ("Tokyo", "New York").
//!
//! Anything else is unknown, and an unknown city gets no proposal: never a guess.

use crate::reminder::zone::UserTimeZone;

/// A place a user said they live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The place in words, after «в» («Перми»; a tz database city as it is written there,
    /// "Tokyo").
    pub name_in: String,
    /// The place as the user wrote it, capitalised ("Perm", «Пермь»).
    pub said: String,
    /// Its time zone.
    pub zone: UserTimeZone,
}

/// "new york" → "New York", «нижний новгород» → «Нижний Новгород».
fn capitalised(phrase: &str) -> String {
    phrase
        .split(' ')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One city of the table: its written forms (lower case, words separated by single spaces),
/// the form after «в» for the proposal, and its IANA zone.
#[derive(Debug, Clone, Copy)]
pub struct City {
    /// Every form that names the city (Russian cases, English name).
    pub forms: &'static [&'static str],
    /// «в Перми» without the «в».
    pub name_in: &'static str,
    /// The IANA zone.
    pub zone: &'static str,
}

const fn city(forms: &'static [&'static str], name_in: &'static str, zone: &'static str) -> City {
    City {
        forms,
        name_in,
        zone,
    }
}

/// The cities the butler recognises by name (docs/user_guide.md lists them). Kept small on
/// purpose: a city missing here is found through the tz database's names when it is one of
/// them, and otherwise gets no proposal.
pub const CITIES: &[City] = &[
    // Russia, west to east.
    city(
        &["калининград", "калининграде", "kaliningrad"],
        "Калининграде",
        "Europe/Kaliningrad",
    ),
    city(
        &["москва", "москве", "москву", "москвы", "moscow"],
        "Москве",
        "Europe/Moscow",
    ),
    city(
        &[
            "санкт-петербург",
            "санкт-петербурге",
            "петербург",
            "петербурге",
            "питер",
            "питере",
            "спб",
            "st petersburg",
            "saint petersburg",
        ],
        "Петербурге",
        "Europe/Moscow",
    ),
    city(&["казань", "казани", "kazan"], "Казани", "Europe/Moscow"),
    city(
        &["нижний новгород", "нижнем новгороде", "нижнего новгорода"],
        "Нижнем Новгороде",
        "Europe/Moscow",
    ),
    city(
        &["воронеж", "воронеже", "voronezh"],
        "Воронеже",
        "Europe/Moscow",
    ),
    city(
        &["ростов-на-дону", "ростове-на-дону", "ростов", "ростове"],
        "Ростове-на-Дону",
        "Europe/Moscow",
    ),
    city(
        &["краснодар", "краснодаре", "krasnodar"],
        "Краснодаре",
        "Europe/Moscow",
    ),
    city(&["сочи", "sochi"], "Сочи", "Europe/Moscow"),
    city(&["тверь", "твери", "tver"], "Твери", "Europe/Moscow"),
    city(
        &["ярославль", "ярославле", "yaroslavl"],
        "Ярославле",
        "Europe/Moscow",
    ),
    city(
        &["волгоград", "волгограде", "volgograd"],
        "Волгограде",
        "Europe/Volgograd",
    ),
    city(
        &["саратов", "саратове", "saratov"],
        "Саратове",
        "Europe/Saratov",
    ),
    city(
        &["самара", "самаре", "самару", "samara"],
        "Самаре",
        "Europe/Samara",
    ),
    city(
        &["ижевск", "ижевске", "izhevsk"],
        "Ижевске",
        "Europe/Samara",
    ),
    city(
        &["ульяновск", "ульяновске", "ulyanovsk"],
        "Ульяновске",
        "Europe/Ulyanovsk",
    ),
    city(
        &["астрахань", "астрахани", "astrakhan"],
        "Астрахани",
        "Europe/Astrakhan",
    ),
    city(
        &[
            "екатеринбург",
            "екатеринбурге",
            "екб",
            "yekaterinburg",
            "ekaterinburg",
        ],
        "Екатеринбурге",
        "Asia/Yekaterinburg",
    ),
    city(&["пермь", "перми", "perm"], "Перми", "Asia/Yekaterinburg"),
    city(
        &["челябинск", "челябинске", "chelyabinsk"],
        "Челябинске",
        "Asia/Yekaterinburg",
    ),
    city(
        &["тюмень", "тюмени", "tyumen"],
        "Тюмени",
        "Asia/Yekaterinburg",
    ),
    city(&["уфа", "уфе", "уфу", "ufa"], "Уфе", "Asia/Yekaterinburg"),
    city(
        &["оренбург", "оренбурге", "orenburg"],
        "Оренбурге",
        "Asia/Yekaterinburg",
    ),
    city(&["омск", "омске", "omsk"], "Омске", "Asia/Omsk"),
    city(
        &["новосибирск", "новосибирске", "novosibirsk"],
        "Новосибирске",
        "Asia/Novosibirsk",
    ),
    city(&["томск", "томске", "tomsk"], "Томске", "Asia/Tomsk"),
    city(
        &["барнаул", "барнауле", "barnaul"],
        "Барнауле",
        "Asia/Barnaul",
    ),
    city(
        &["кемерово", "новокузнецк", "новокузнецке", "kemerovo"],
        "Кузбассе",
        "Asia/Novokuznetsk",
    ),
    city(
        &["красноярск", "красноярске", "krasnoyarsk"],
        "Красноярске",
        "Asia/Krasnoyarsk",
    ),
    city(
        &["иркутск", "иркутске", "irkutsk"],
        "Иркутске",
        "Asia/Irkutsk",
    ),
    city(&["улан-удэ", "ulan-ude"], "Улан-Удэ", "Asia/Irkutsk"),
    city(&["чита", "чите", "chita"], "Чите", "Asia/Chita"),
    city(&["якутск", "якутске", "yakutsk"], "Якутске", "Asia/Yakutsk"),
    city(
        &["хабаровск", "хабаровске", "khabarovsk"],
        "Хабаровске",
        "Asia/Vladivostok",
    ),
    city(
        &["владивосток", "владивостоке", "vladivostok"],
        "Владивостоке",
        "Asia/Vladivostok",
    ),
    city(
        &["южно-сахалинск", "южно-сахалинске", "сахалин", "сахалине"],
        "Южно-Сахалинске",
        "Asia/Sakhalin",
    ),
    city(
        &["магадан", "магадане", "magadan"],
        "Магадане",
        "Asia/Magadan",
    ),
    city(
        &[
            "петропавловск-камчатский",
            "петропавловске-камчатском",
            "камчатка",
            "камчатке",
        ],
        "Петропавловске-Камчатском",
        "Asia/Kamchatka",
    ),
    // CIS and neighbours.
    city(&["минск", "минске", "minsk"], "Минске", "Europe/Minsk"),
    city(
        &["киев", "киеве", "київ", "києві", "kyiv", "kiev"],
        "Киеве",
        "Europe/Kyiv",
    ),
    city(
        &["кишинёв", "кишинев", "кишинёве", "кишиневе", "chisinau"],
        "Кишинёве",
        "Europe/Chisinau",
    ),
    city(&["рига", "риге", "riga"], "Риге", "Europe/Riga"),
    city(
        &["вильнюс", "вильнюсе", "vilnius"],
        "Вильнюсе",
        "Europe/Vilnius",
    ),
    city(
        &["таллин", "таллине", "таллинн", "tallinn"],
        "Таллине",
        "Europe/Tallinn",
    ),
    city(&["тбилиси", "tbilisi"], "Тбилиси", "Asia/Tbilisi"),
    city(&["ереван", "ереване", "yerevan"], "Ереване", "Asia/Yerevan"),
    city(&["баку", "baku"], "Баку", "Asia/Baku"),
    city(
        &["алматы", "алма-ата", "алма-ате", "almaty"],
        "Алматы",
        "Asia/Almaty",
    ),
    city(&["астана", "астане", "astana"], "Астане", "Asia/Almaty"),
    city(
        &["ташкент", "ташкенте", "tashkent"],
        "Ташкенте",
        "Asia/Tashkent",
    ),
    city(&["бишкек", "бишкеке", "bishkek"], "Бишкеке", "Asia/Bishkek"),
    city(&["душанбе", "dushanbe"], "Душанбе", "Asia/Dushanbe"),
    // The world, by the Russian names (English names come from the tz database).
    city(&["лондон", "лондоне"], "Лондоне", "Europe/London"),
    city(&["берлин", "берлине"], "Берлине", "Europe/Berlin"),
    city(&["париж", "париже"], "Париже", "Europe/Paris"),
    city(&["прага", "праге"], "Праге", "Europe/Prague"),
    city(&["варшава", "варшаве"], "Варшаве", "Europe/Warsaw"),
    city(&["вена", "вене"], "Вене", "Europe/Vienna"),
    city(&["рим", "риме"], "Риме", "Europe/Rome"),
    city(
        &["мадрид", "мадриде", "барселона", "барселоне"],
        "Испании",
        "Europe/Madrid",
    ),
    city(&["лиссабон", "лиссабоне"], "Лиссабоне", "Europe/Lisbon"),
    city(
        &["амстердам", "амстердаме"],
        "Амстердаме",
        "Europe/Amsterdam",
    ),
    city(&["белград", "белграде"], "Белграде", "Europe/Belgrade"),
    city(&["хельсинки"], "Хельсинки", "Europe/Helsinki"),
    city(
        &["стамбул", "стамбуле", "анталья", "анталье", "istanbul"],
        "Турции",
        "Europe/Istanbul",
    ),
    city(
        &["лимассол", "лимассоле", "кипр", "кипре", "limassol"],
        "Кипре",
        "Asia/Nicosia",
    ),
    city(
        &[
            "тель-авив",
            "тель-авиве",
            "иерусалим",
            "иерусалиме",
            "tel aviv",
        ],
        "Израиле",
        "Asia/Jerusalem",
    ),
    city(&["дубай", "дубае", "dubai"], "Дубае", "Asia/Dubai"),
    city(&["гоа", "goa"], "Гоа", "Asia/Kolkata"),
    city(
        &["бангкок", "бангкоке", "пхукет", "пхукете", "phuket"],
        "Таиланде",
        "Asia/Bangkok",
    ),
    city(&["бали", "bali"], "Бали", "Asia/Makassar"),
    city(
        &["пекин", "пекине", "шанхай", "шанхае", "beijing"],
        "Китае",
        "Asia/Shanghai",
    ),
    city(&["сеул", "сеуле"], "Сеуле", "Asia/Seoul"),
    city(&["токио"], "Токио", "Asia/Tokyo"),
    city(&["сингапур", "сингапуре"], "Сингапуре", "Asia/Singapore"),
    city(&["нью-йорк", "нью-йорке"], "Нью-Йорке", "America/New_York"),
    city(&["чикаго"], "Чикаго", "America/Chicago"),
    city(
        &[
            "лос-анджелес",
            "лос-анджелесе",
            "сан-франциско",
            "san francisco",
        ],
        "Калифорнии",
        "America/Los_Angeles",
    ),
    city(&["торонто"], "Торонто", "America/Toronto"),
];

/// Words after which a place is where the speaker lives (lower case): «я живу в Перми», «я из
/// Перми», "I live in Berlin" — and the third person the fact extractor writes («Живёт в
/// Твери»).
const LIVES_IN: &[&str] = &[
    "живу в ",
    "живём в ",
    "живем в ",
    "живёт в ",
    "живет в ",
    "я из ",
    "мы из ",
    "переехал в ",
    "переехала в ",
    "переехали в ",
    "перебрался в ",
    "перебралась в ",
    "я сейчас в ",
    "я теперь в ",
    "мой город ",
    "i live in ",
    "we live in ",
    "lives in ",
    "living in ",
    "i'm from ",
    "i am from ",
    "i moved to ",
    "we moved to ",
    "moved to ",
    "i'm based in ",
    "based in ",
];

/// The place `text` says the speaker lives in («Я живу в Перми», "I moved to Tokyo"), if it
/// names a known city right after such words; `None` otherwise.
#[must_use]
pub fn lives_in(text: &str) -> Option<Place> {
    let lower = text.to_lowercase().replace('’', "'");
    LIVES_IN.iter().find_map(|cue| {
        lower
            .match_indices(cue)
            .filter(|(at, _)| *at == 0 || !lower[..*at].ends_with(char::is_alphanumeric))
            .find_map(|(at, _)| place_at_start(&lower[at + cue.len()..]))
    })
}

/// The city a text about the user's home names (a stored fact whose key already says it is
/// the home city: "home_city" → «Пермь»): the first one after «в» / "in" («Переехал из Казани
/// в Тверь» → Тверь), else the first one not after «из» / "from".
#[must_use]
pub fn any_city_in(text: &str) -> Option<Place> {
    let lower = text.to_lowercase();
    let words = words(&lower);
    let named: Vec<(Option<&str>, Place)> = (0..words.len())
        .filter_map(|i| {
            let before = i.checked_sub(1).map(|j| words[j].as_str());
            place_at_start(&words[i..].join(" ")).map(|p| (before, p))
        })
        .collect();
    let after = |cues: &[&str], before: Option<&str>| before.is_some_and(|b| cues.contains(&b));
    named
        .iter()
        .find(|(before, _)| after(&["в", "во", "in"], *before))
        .or_else(|| {
            named
                .iter()
                .find(|(before, _)| !after(&["из", "from", "с", "от"], *before))
        })
        .map(|(_, place)| place.clone())
}

/// The city the text starts with: the longest phrase of up to three words that the table or
/// the tz database knows.
fn place_at_start(rest: &str) -> Option<Place> {
    let words = words(rest);
    (1..=words.len().min(3))
        .rev()
        .find_map(|n| named(&words[..n].join(" ")))
}

/// Lower-case words, punctuation dropped (hyphens, apostrophes and slashes stay: «улан-удэ»,
/// "asia/tokyo").
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '/' | '_' | '\'')))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The place a lower-case phrase names: a city of the table, an IANA name, or the city of an
/// IANA name written out ("new york" → `America/New_York`).
fn named(phrase: &str) -> Option<Place> {
    if let Some(c) = CITIES.iter().find(|c| c.forms.contains(&phrase)) {
        return Some(Place {
            name_in: c.name_in.to_owned(),
            said: capitalised(phrase),
            zone: UserTimeZone::new(c.zone).ok()?,
        });
    }
    if phrase.chars().count() < 4 {
        return None;
    }
    let wanted = phrase.replace(' ', "_");
    jiff::tz::db().available().find_map(|name| {
        let name = name.as_str();
        let city = name.rsplit('/').next().unwrap_or(name);
        let matches = name.eq_ignore_ascii_case(&wanted)
            || (name.contains('/') && city.eq_ignore_ascii_case(&wanted));
        matches.then(|| {
            Some(Place {
                name_in: city.replace('_', " "),
                said: capitalised(phrase),
                zone: UserTimeZone::new(name).ok()?,
            })
        })?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(text: &str) -> Option<String> {
        lives_in(text).map(|p| p.zone.name().to_owned())
    }

    #[test]
    fn saying_where_you_live_names_the_citys_zone() {
        for (text, expected) in [
            ("Я живу в Перми", Some("Asia/Yekaterinburg")),
            ("мы из Нижнего Новгорода", Some("Europe/Moscow")),
            ("I’m from Omsk", Some("Asia/Omsk")),
            ("Кстати, я теперь в Новосибирске.", Some("Asia/Novosibirsk")),
            ("Переехала в Санкт-Петербург весной", Some("Europe/Moscow")),
            ("I live in Berlin", Some("Europe/Berlin")),
            ("we moved to New York last year", Some("America/New_York")),
            ("I'm from Asia/Tokyo", Some("Asia/Tokyo")),
            ("Живёт в Твери", Some("Europe/Moscow")),
            ("Я живу в Урюпинске", None),
            ("Я живу в гармонии с собой", None),
            ("Был в Перми проездом", None),
            ("напомни завтра в 9 позвонить маме", None),
        ] {
            assert_eq!(zone(text).as_deref(), expected, "{text}");
        }
        let perm = lives_in("я живу в Перми").unwrap();
        assert_eq!(perm.name_in, "Перми");
        assert_eq!(lives_in("I live in perm").unwrap().said, "Perm");
    }

    #[test]
    fn a_home_city_fact_names_its_zone_anywhere_in_the_text() {
        assert_eq!(
            any_city_in("Пермь, Россия").map(|p| p.zone.name().to_owned()),
            Some("Asia/Yekaterinburg".to_owned())
        );
        assert_eq!(
            any_city_in("Los Angeles").map(|p| p.name_in),
            Some("Los Angeles".to_owned())
        );
        assert!(any_city_in("на даче").is_none());
        assert_eq!(
            any_city_in("Переехал из Омска в Тверь").map(|p| p.name_in),
            Some("Твери".to_owned()),
            "where they moved to, not from"
        );
        assert!(any_city_in("родом из Омска").is_none());
    }

    #[test]
    fn every_city_of_the_table_has_a_zone_the_tz_database_knows() {
        for c in CITIES {
            assert!(UserTimeZone::new(c.zone).is_ok(), "{}", c.zone);
            for form in c.forms {
                assert_eq!(form.to_lowercase(), *form, "{form}");
                assert_eq!(
                    named(form).map(|p| p.zone.name().to_owned()),
                    UserTimeZone::new(c.zone).ok().map(|z| z.name().to_owned()),
                    "{form}"
                );
            }
        }
    }
}
