//! The synthetic data set of the memory benchmark, generated from a seed (no files): Russian
//! and English users, each telling the butler about forty facts of their life between small
//! talk — people, dates, places, likes, promises — then changing some of them (UPDATES: only the
//! newest value is current) and mentioning look-alike facts of other people or of a
//! hypothetical life (DISTRACTORS: never the user's facts). Every current fact gets a question.
//!
//! The wording lives in tables: [`SLOTS`] (what a fact is about, how it is asked for) and the
//! frames of statements, updates and distractors. Values are written in their dictionary form
//! (nominative in Russian: «мой родной город — Тверь»), so a value is found in a text by a
//! whole-word match ([`contains_value`]).

use std::collections::HashSet;

use butler_domain::Language;
use butler_testkit::oracle::{Knowledge, OracleFact};

use super::heldout::{held_out, ASKED_AS_A_CHANGE, SEVERAL_AT_ONCE};

/// Pools values are drawn from (without replacement within one user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// First names (people and pets).
    Name,
    /// Calendar dates.
    Date,
    /// Cities.
    City,
    /// Cafés and clubs.
    Venue,
    /// Dishes.
    Food,
    /// Drinks.
    Drink,
    /// Colours.
    Colour,
    /// Sports.
    Sport,
    /// Books.
    Book,
    /// Flowers.
    Flower,
    /// Allergens.
    Allergen,
    /// Things promised.
    Promise,
}

/// What a fact is about.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// The fact key (what the extractor files it under).
    pub key: &'static str,
    /// The fact kind.
    pub kind: &'static str,
    /// Where its values come from.
    pub pool: Pool,
    /// English subject after "my": "home city".
    pub en: &'static str,
    /// English question.
    pub en_question: &'static str,
    /// Russian subject with its possessive: «мой родной город».
    pub ru: &'static str,
    /// Russian subject without it (fact texts, distractors): «родной город».
    pub ru_bare: &'static str,
    /// Russian question.
    pub ru_question: &'static str,
}

const fn slot(
    key: &'static str,
    kind: &'static str,
    pool: Pool,
    (en, en_question): (&'static str, &'static str),
    (ru, ru_bare, ru_question): (&'static str, &'static str, &'static str),
) -> Slot {
    Slot {
        key,
        kind,
        pool,
        en,
        en_question,
        ru,
        ru_bare,
        ru_question,
    }
}

use Pool::{Allergen, Book, City, Colour, Date, Drink, Flower, Food, Name, Promise, Sport, Venue};

/// Every kind of fact a user may tell (each user tells most of them).
#[rustfmt::skip]
pub const SLOTS: &[Slot] = &[
    slot("sister_name", "person", Name, ("sister", "What is my sister's name?"), ("моя сестра", "сестра", "Как зовут мою сестру?")),
    slot("brother_name", "person", Name, ("brother", "What is my brother's name?"), ("мой брат", "брат", "Как зовут моего брата?")),
    slot("mother_name", "person", Name, ("mother", "What is my mother's name?"), ("моя мама", "мама", "Как зовут мою маму?")),
    slot("father_name", "person", Name, ("father", "What is my father's name?"), ("мой папа", "папа", "Как зовут моего папу?")),
    slot("wife_name", "person", Name, ("wife", "What is my wife's name?"), ("моя жена", "жена", "Как зовут мою жену?")),
    slot("son_name", "person", Name, ("son", "What is my son's name?"), ("мой сын", "сын", "Как зовут моего сына?")),
    slot("daughter_name", "person", Name, ("daughter", "What is my daughter's name?"), ("моя дочь", "дочь", "Как зовут мою дочь?")),
    slot("boss_name", "person", Name, ("boss", "What is my boss's name?"), ("мой начальник", "начальник", "Как зовут моего начальника?")),
    slot("best_friend_name", "person", Name, ("best friend", "What is my best friend's name?"), ("мой лучший друг", "лучший друг", "Как зовут моего лучшего друга?")),
    slot("neighbour_name", "person", Name, ("neighbour", "What is my neighbour's name?"), ("мой сосед", "сосед", "Как зовут моего соседа?")),
    slot("dentist_name", "person", Name, ("dentist", "What is my dentist's name?"), ("мой стоматолог", "стоматолог", "Как зовут моего стоматолога?")),
    slot("grandmother_name", "person", Name, ("grandmother", "What is my grandmother's name?"), ("моя бабушка", "бабушка", "Как зовут мою бабушку?")),
    slot("cat_name", "person", Name, ("cat", "What is my cat called?"), ("мой кот", "кот", "Как зовут моего кота?")),
    slot("dog_name", "person", Name, ("dog", "What is my dog called?"), ("моя собака", "собака", "Как зовут мою собаку?")),
    slot("piano_teacher_name", "person", Name, ("piano teacher", "What is my piano teacher's name?"), ("моя учительница музыки", "учительница музыки", "Как зовут мою учительницу музыки?")),
    slot("birthday_date", "date", Date, ("birthday", "When is my birthday?"), ("мой день рождения", "день рождения", "Когда у меня день рождения?")),
    slot("mother_birthday_date", "date", Date, ("mother's birthday", "When is my mother's birthday?"), ("день рождения мамы", "день рождения мамы", "Когда день рождения мамы?")),
    slot("anniversary_date", "date", Date, ("wedding anniversary", "When is our wedding anniversary?"), ("годовщина свадьбы", "годовщина свадьбы", "Когда у нас годовщина свадьбы?")),
    slot("dentist_appointment_date", "date", Date, ("dentist appointment", "When is my dentist appointment?"), ("запись к стоматологу", "запись к стоматологу", "Когда у меня запись к стоматологу?")),
    slot("concert_date", "date", Date, ("concert", "When is my concert?"), ("мой концерт", "концерт", "Когда мой концерт?")),
    slot("flight_date", "date", Date, ("flight", "When is my flight?"), ("мой рейс", "рейс", "Когда мой рейс?")),
    slot("exam_date", "date", Date, ("exam", "When is my exam?"), ("мой экзамен", "экзамен", "Когда мой экзамен?")),
    slot("car_service_date", "date", Date, ("car service", "When is my car service?"), ("техосмотр машины", "техосмотр машины", "Когда техосмотр машины?")),
    slot("passport_renewal_date", "date", Date, ("passport renewal", "When is my passport renewal?"), ("замена паспорта", "замена паспорта", "Когда замена паспорта?")),
    slot("home_city", "place", City, ("home city", "Which city do I live in, my home city?"), ("мой город", "город проживания", "В каком городе я живу?")),
    slot("birth_city", "place", City, ("birthplace", "Where is my birthplace?"), ("моё место рождения", "место рождения", "Какое у меня место рождения?")),
    slot("work_city", "place", City, ("office city", "Which is my office city?"), ("город моего офиса", "город офиса", "В каком городе мой офис?")),
    slot("vacation_destination", "place", City, ("holiday destination", "What is my holiday destination?"), ("цель моего отпуска", "цель отпуска", "Куда я еду в отпуск, какая цель отпуска?")),
    slot("sister_city", "place", City, ("sister's city", "Which city does my sister live in?"), ("город сестры", "город сестры", "В каком городе живёт сестра?")),
    slot("favourite_cafe", "place", Venue, ("favourite café", "What is my favourite café?"), ("моё любимое кафе", "любимое кафе", "Какое моё любимое кафе?")),
    slot("gym", "place", Venue, ("gym", "Which gym do I go to?"), ("мой спортзал", "спортзал", "Какой у меня спортзал?")),
    slot("favourite_food", "preference", Food, ("favourite dish", "What is my favourite dish?"), ("моё любимое блюдо", "любимое блюдо", "Какое моё любимое блюдо?")),
    slot("favourite_drink", "preference", Drink, ("favourite drink", "What is my favourite drink?"), ("мой любимый напиток", "любимый напиток", "Какой мой любимый напиток?")),
    slot("favourite_colour", "preference", Colour, ("favourite colour", "What is my favourite colour?"), ("мой любимый цвет", "любимый цвет", "Какой мой любимый цвет?")),
    slot("favourite_sport", "preference", Sport, ("favourite sport", "What is my favourite sport?"), ("мой любимый спорт", "любимый спорт", "Какой мой любимый спорт?")),
    slot("favourite_book", "preference", Book, ("favourite book", "What is my favourite book?"), ("моя любимая книга", "любимая книга", "Какая моя любимая книга?")),
    slot("favourite_flower", "preference", Flower, ("favourite flower", "What is my favourite flower?"), ("мой любимый цветок", "любимый цветок", "Какой мой любимый цветок?")),
    slot("allergy", "preference", Allergen, ("allergy", "What is my allergy?"), ("моя аллергия", "аллергия", "На что у меня аллергия?")),
    slot("promise_to_sister", "promise", Promise, ("promise to my sister", "What is my promise to my sister?"), ("моё обещание сестре", "обещание сестре", "Какое у меня обещание сестре?")),
    slot("promise_to_boss", "promise", Promise, ("promise to my boss", "What is my promise to my boss?"), ("моё обещание начальнику", "обещание начальнику", "Какое у меня обещание начальнику?")),
    slot("promise_to_son", "promise", Promise, ("promise to my son", "What is my promise to my son?"), ("моё обещание сыну", "обещание сыну", "Какое у меня обещание сыну?")),
    slot("butler_reminder", "promise", Promise, ("reminder for you", "What did I ask you to remind me about?"), ("просьба напомнить", "просьба напомнить", "О чём вы обещали мне напомнить?")),
    slot("neighbour_city", "place", City, ("neighbour's hometown", "Where is my neighbour's hometown?"), ("родной город соседа", "родной город соседа", "Какой родной город у соседа?")),
    slot("wedding_city", "place", City, ("wedding city", "Which was our wedding city?"), ("город нашей свадьбы", "город свадьбы", "В каком городе была наша свадьба?")),
];

/// The values of each pool, English then Russian. Chosen so that none is a word of another
/// value, of a template or of the butler's persona.
#[rustfmt::skip]
fn values(pool: Pool, language: Language) -> &'static [&'static str] {
    let en = language == Language::En;
    match pool {
        Name if en => &["Anna", "Margaret", "Oliver", "Harriet", "Duncan", "Imogen", "Rupert", "Beatrice", "Clive", "Philippa", "Giles", "Rosalind", "Nigel", "Penelope", "Hugo", "Winifred", "Barnaby", "Cordelia", "Jasper", "Millicent", "Ambrose", "Tabitha", "Cedric", "Ottilie", "Percival", "Lavinia", "Montague", "Euphemia", "Horace", "Clementine"],
        Name => &["Анна", "Мария", "Пётр", "Ольга", "Дмитрий", "Екатерина", "Сергей", "Наталья", "Игорь", "Татьяна", "Григорий", "Людмила", "Аркадий", "Вера", "Фёдор", "Зинаида", "Тимофей", "Варвара", "Степан", "Агата", "Ефим", "Злата", "Савелий", "Ульяна", "Прохор", "Глафира", "Лукьян", "Мирослава", "Остап", "Светлана"],
        City if en => &["Tver", "Kazan", "Leeds", "York", "Bristol", "Porto", "Lisbon", "Bergen", "Krakow", "Ghent", "Bologna", "Seville", "Tallinn", "Riga", "Dundee", "Galway", "Lyon", "Graz", "Turku", "Aarhus"],
        City => &["Тверь", "Казань", "Самара", "Пермь", "Тула", "Калуга", "Псков", "Вологда", "Иркутск", "Томск", "Суздаль", "Выборг", "Рязань", "Кострома", "Ярославль", "Саратов", "Омск", "Чита", "Сочи", "Мурманск"],
        Venue if en => &["Blue Door", "Copper Kettle", "Ivy House", "Iron Works", "Red Lion", "Old Mill", "Grey Heron"],
        Venue => &["Синяя дверь", "Медный чайник", "Старая мельница", "Железный двор", "Серая цапля", "Белый медведь", "Зелёная лампа"],
        Food if en => &["shepherd's pie", "paella", "risotto", "lasagne", "goulash", "ramen", "moussaka"],
        Food => &["борщ", "пельмени", "плов", "солянка", "голубцы", "окрошка", "шарлотка"],
        Drink if en => &["Earl Grey", "espresso", "ginger beer", "lemonade", "cider", "cocoa", "kefir"],
        Drink => &["морс", "квас", "капучино", "какао", "сбитень", "компот", "кефир"],
        Colour if en => &["turquoise", "crimson", "ochre", "lilac", "navy", "emerald"],
        Colour => &["бирюзовый", "малиновый", "охристый", "сиреневый", "изумрудный", "бордовый"],
        Sport if en => &["rowing", "fencing", "badminton", "cycling", "curling", "squash"],
        Sport => &["гребля", "фехтование", "бадминтон", "велоспорт", "кёрлинг", "биатлон"],
        Book if en => &["Middlemarch", "Ulysses", "Dracula", "Emma", "Rebecca", "Persuasion"],
        Book => &["Обломов", "Идиот", "Мастер и Маргарита", "Евгений Онегин", "Отцы и дети", "Тихий Дон"],
        Flower if en => &["peony", "tulip", "lily", "orchid", "daffodil", "magnolia"],
        Flower => &["пион", "тюльпан", "ландыш", "орхидея", "сирень", "ромашка"],
        Allergen if en => &["peanuts", "pollen", "shellfish", "penicillin", "dust mites", "strawberries"],
        Allergen => &["арахис", "пыльца", "креветки", "пенициллин", "клубника", "шерсть"],
        Promise if en => &["fix the bicycle", "bring the red wine", "finish the report", "buy a telescope", "visit in spring", "call every Sunday", "paint the fence", "return the ladder"],
        Promise => &["починить велосипед", "привезти красное вино", "закончить отчёт", "купить телескоп", "приехать весной", "звонить по воскресеньям", "покрасить забор", "вернуть стремянку"],
        Date => &[],
    }
}

#[rustfmt::skip]
const MONTHS_EN: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
#[rustfmt::skip]
const MONTHS_RU: [&str; 12] = ["января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря"];

/// How a fact is first told: `{s}` the subject (with "my" / its possessive), `{v}` the value.
#[rustfmt::skip]
const STATE_EN: [&str; 3] = ["By the way, my {s} is {v}.", "Just so you know, my {s} is {v}.", "Please remember: my {s} is {v}."];
#[rustfmt::skip]
const STATE_RU: [&str; 3] = ["Кстати, {s} — {v}.", "К вашему сведению: {s} — {v}.", "Запомните, пожалуйста: {s} — {v}."];
/// How a fact is changed later.
#[rustfmt::skip]
const UPDATE_EN: [&str; 2] = ["Change of plans: my {s} is now {v}.", "A correction: my {s} is {v} now."];
#[rustfmt::skip]
const UPDATE_RU: [&str; 2] = ["Поменялось: {s} теперь — {v}.", "Поправка: {s} теперь — {v}."];
/// Look-alike statements that are not the user's facts (`{b}` the bare subject).
#[rustfmt::skip]
const DISTRACT_EN: [&str; 3] = ["Funnily enough, my colleague's {b} is {v}.", "If I had the choice, my {b} would be {v}, but it isn't.", "A friend told me that his {b} is {v}."];
#[rustfmt::skip]
const DISTRACT_RU: [&str; 3] = ["Забавно: у моего коллеги {b} — {v}.", "Гипотетически: {b} — {v}. Но это не про меня.", "Друг рассказал, что у него {b} — {v}."];

/// Small talk between the facts: no names, places, dates or tastes in it.
const SMALL_TALK_EN: &[&str] = &[
    "Good morning! How are things today?",
    "What a grey morning it is.",
    "Any advice for a quiet evening?",
    "I slept badly, to be honest.",
    "Could you suggest something to read tonight?",
    "The kettle has been whistling for ages.",
    "How do you keep so calm all the time?",
    "I think I need a walk after lunch.",
    "What would you do on a rainy Saturday?",
    "Remind me to drink more water, would you?",
    "The news is rather gloomy today.",
    "I am tired of meetings.",
    "Do you think it will rain later?",
    "Tell me something cheerful, please.",
    "I finally tidied my desk.",
    "Is it too late for a cup of coffee?",
    "What is a good way to start the week?",
    "I have a pile of letters to answer.",
    "Thank you, that was helpful.",
    "Let us talk about something else.",
    "How long should a nap be?",
    "I keep forgetting my umbrella.",
    "The garden needs some attention.",
    "Any thoughts on learning to cook?",
];
const SMALL_TALK_RU: &[&str] = &[
    "Доброе утро! Как дела сегодня?",
    "Какое серое утро.",
    "Что посоветуете на тихий вечер?",
    "Честно говоря, плохо спал.",
    "Что бы почитать сегодня вечером?",
    "Чайник уже давно свистит.",
    "Как вам удаётся всегда сохранять спокойствие?",
    "Пожалуй, после обеда нужна прогулка.",
    "Чем заняться в дождливую субботу?",
    "Напоминайте мне пить больше воды.",
    "Новости сегодня мрачноватые.",
    "Устал от совещаний.",
    "Как думаете, будет дождь?",
    "Расскажите что-нибудь весёлое.",
    "Наконец-то разобрал письменный стол.",
    "Не поздно ли для чашки кофе?",
    "Как лучше начать неделю?",
    "У меня гора писем без ответа.",
    "Спасибо, это помогло.",
    "Давайте поговорим о другом.",
    "Сколько должен длиться дневной сон?",
    "Всё время забываю зонт.",
    "Саду нужно внимание.",
    "Стоит ли учиться готовить?",
];

/// Sizes of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Users (alternately Russian and English).
    pub users: usize,
    /// Messages each user writes (facts, updates, distractors and small talk).
    pub messages_per_user: usize,
    /// Distinct facts each user tells (at most [`SLOTS`]`.len()`).
    pub facts_per_user: usize,
    /// Facts each user later changes.
    pub updates_per_user: usize,
    /// Look-alike statements each user makes.
    pub distractors_per_user: usize,
}

impl Sizes {
    /// The benchmark's size: 10 users × 160 messages, 40 facts, 6 updates, 8 distractors each.
    pub const FULL: Self = Self {
        users: 10,
        messages_per_user: 160,
        facts_per_user: 40,
        updates_per_user: 6,
        distractors_per_user: 8,
    };
}

/// What a message of the conversation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Small talk.
    SmallTalk,
    /// States the first value of the fact `key`.
    Fact {
        /// The fact key.
        key: &'static str,
    },
    /// Changes the fact `key` to a new value.
    Update {
        /// The fact key.
        key: &'static str,
    },
    /// Looks like a fact of `key` but is not the user's.
    Distractor {
        /// The key it imitates.
        key: &'static str,
    },
}

/// One message a user writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its text.
    pub text: String,
    /// What it is.
    pub said: Said,
}

/// A fact as it stands at the end of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedFact {
    /// Its slot.
    pub slot: Slot,
    /// The current (newest) value.
    pub value: String,
    /// The value it had before an update, if it was updated.
    pub previous: Option<String>,
    /// The value a distractor gave for the same subject, if any.
    pub distractor: Option<String>,
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Slot {}

/// A question and the planted fact that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// What the user asks.
    pub text: String,
    /// The fact key that answers it.
    pub key: &'static str,
    /// The expected answer (the current value).
    pub expected: String,
    /// An outdated value that must not be given.
    pub outdated: Option<String>,
    /// A distractor's value that must not be given.
    pub distractor: Option<String>,
    /// Further values the prompt must hold too (a question needing several facts).
    pub also: Vec<String>,
}

/// One synthetic user.
#[derive(Debug, Clone)]
pub struct User {
    /// A numeric id (also the Telegram id the run uses).
    pub id: i64,
    /// The language they write in.
    pub language: Language,
    /// Their messages in order.
    pub messages: Vec<Message>,
    /// Their facts as they stand at the end.
    pub facts: Vec<PlantedFact>,
    /// Questions about their facts, one per current fact.
    pub questions: Vec<Question>,
    /// The held-out questions ([`super::heldout`]), one per current fact.
    pub held_out: Vec<Question>,
    /// Held-out questions needing several facts at once, and about updates worded as the
    /// change ([`super::heldout::SEVERAL_AT_ONCE`], [`super::heldout::ASKED_AS_A_CHANGE`]).
    pub harder: Vec<Question>,
}

/// The data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The users.
    pub users: Vec<User>,
}

fn fill(frame: &str, subject: &str, value: &str) -> String {
    frame
        .replace("{s}", subject)
        .replace("{b}", subject)
        .replace("{v}", value)
}

/// The canonical text of a fact (what the oracle extracts and summarises).
#[must_use]
pub fn fact_text(slot: &Slot, language: Language, value: &str) -> String {
    let subject = match language {
        Language::En => slot.en,
        Language::Ru => slot.ru_bare,
    };
    let mut chars = subject.chars();
    let capitalised: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    format!("{capitalised}: {value}")
}

/// The cues a good extractor gives the fact of `key` ([`super::heldout`]).
fn cues(key: &str, language: Language) -> Vec<String> {
    held_out(key)
        .map(|h| match language {
            Language::En => h.en_cues,
            Language::Ru => h.ru_cues,
        })
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `value` occurs in `text` as whole words, ignoring case.
#[must_use]
pub fn contains_value(text: &str, value: &str) -> bool {
    let (text, value) = (normalise(text), normalise(value));
    if value.is_empty() {
        return false;
    }
    text.match_indices(&value).any(|(i, m)| {
        let before = text[..i].chars().next_back();
        let after = text[i + m.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

fn normalise(text: &str) -> String {
    text.to_lowercase()
        .replace('ё', "е")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Draws distinct values of one user.
struct Draw<'r> {
    rng: &'r mut fastrand::Rng,
    language: Language,
    used: HashSet<String>,
}

impl Draw<'_> {
    fn value(&mut self, pool: Pool) -> String {
        loop {
            let value = if pool == Date {
                let day = self.rng.u32(1..=28);
                let month = self.rng.usize(0..12);
                match self.language {
                    Language::En => format!("{} {day}", MONTHS_EN[month]),
                    Language::Ru => format!("{day} {}", MONTHS_RU[month]),
                }
            } else {
                let pool = values(pool, self.language);
                pool[self.rng.usize(0..pool.len())].to_owned()
            };
            if self.used.insert(normalise(&value)) {
                return value;
            }
        }
    }
}

/// Puts `message` at the first free place at or after `at`, else the last free one before
/// (else at the end: `generate` checks there is room, so that never happens).
fn place(timeline: &mut Vec<Option<Message>>, at: usize, message: Message) -> usize {
    let at = at.min(timeline.len().saturating_sub(1));
    let free = (at..timeline.len())
        .find(|&i| timeline[i].is_none())
        .or_else(|| (0..at).rev().find(|&i| timeline[i].is_none()));
    match free {
        Some(i) => {
            timeline[i] = Some(message);
            i
        }
        None => {
            timeline.push(Some(message));
            timeline.len() - 1
        }
    }
}

fn user(id: i64, language: Language, sizes: &Sizes, rng: &mut fastrand::Rng) -> User {
    let n = sizes.messages_per_user;
    let (state, update, distract, small_talk) = match language {
        Language::En => (
            &STATE_EN[..],
            &UPDATE_EN[..],
            &DISTRACT_EN[..],
            SMALL_TALK_EN,
        ),
        Language::Ru => (
            &STATE_RU[..],
            &UPDATE_RU[..],
            &DISTRACT_RU[..],
            SMALL_TALK_RU,
        ),
    };
    let subject = |s: &Slot| match language {
        Language::En => s.en,
        Language::Ru => s.ru,
    };
    let bare = |s: &Slot| match language {
        Language::En => s.en,
        Language::Ru => s.ru_bare,
    };
    let mut slots: Vec<Slot> = SLOTS.to_vec();
    rng.shuffle(&mut slots);
    slots.truncate(sizes.facts_per_user.min(SLOTS.len()));
    let mut draw = Draw {
        rng,
        language,
        used: HashSet::new(),
    };
    let mut facts: Vec<PlantedFact> = slots
        .iter()
        .map(|s| PlantedFact {
            slot: *s,
            value: draw.value(s.pool),
            previous: None,
            distractor: None,
        })
        .collect();
    let rng = draw.rng;
    let mut timeline: Vec<Option<Message>> = vec![None; n];
    // First statements in the first 70% of the conversation, so there is room for updates.
    let mut told_at = Vec::with_capacity(facts.len());
    for fact in &facts {
        let frame = state[rng.usize(0..state.len())];
        let at = place(
            &mut timeline,
            rng.usize(0..(n * 7 / 10).max(1)),
            Message {
                text: fill(frame, subject(&fact.slot), &fact.value),
                said: Said::Fact { key: fact.slot.key },
            },
        );
        told_at.push(at);
    }
    // Updates of facts other than names, each well after the first statement.
    let mut updatable: Vec<usize> = (0..facts.len())
        .filter(|&i| facts[i].slot.kind != "person")
        .collect();
    rng.shuffle(&mut updatable);
    let mut draw = Draw {
        rng,
        language,
        used: facts.iter().map(|f| normalise(&f.value)).collect(),
    };
    for &i in updatable.iter().take(sizes.updates_per_user) {
        let new = draw.value(facts[i].slot.pool);
        let earliest = (told_at[i] + 10).min(n - 1);
        let at = earliest + draw.rng.usize(0..(n - earliest).max(1));
        let frame = update[draw.rng.usize(0..update.len())];
        place(
            &mut timeline,
            at,
            Message {
                text: fill(frame, subject(&facts[i].slot), &new),
                said: Said::Update {
                    key: facts[i].slot.key,
                },
            },
        );
        facts[i].previous = Some(std::mem::replace(&mut facts[i].value, new));
    }
    // Distractors about the user's own subjects, anywhere.
    let mut order: Vec<usize> = (0..facts.len()).collect();
    draw.rng.shuffle(&mut order);
    for &i in order.iter().take(sizes.distractors_per_user) {
        let value = draw.value(facts[i].slot.pool);
        let frame = distract[draw.rng.usize(0..distract.len())];
        let at = draw.rng.usize(0..n);
        place(
            &mut timeline,
            at,
            Message {
                text: fill(frame, bare(&facts[i].slot), &value),
                said: Said::Distractor {
                    key: facts[i].slot.key,
                },
            },
        );
        facts[i].distractor = Some(value);
    }
    let rng = draw.rng;
    let messages = timeline
        .into_iter()
        .map(|m| {
            m.unwrap_or_else(|| Message {
                text: small_talk[rng.usize(0..small_talk.len())].to_owned(),
                said: Said::SmallTalk,
            })
        })
        .collect();
    let question = |f: &PlantedFact, text: &str| Question {
        text: text.to_owned(),
        key: f.slot.key,
        expected: f.value.clone(),
        outdated: f.previous.clone(),
        distractor: f.distractor.clone(),
        also: Vec::new(),
    };
    let questions = facts
        .iter()
        .map(|f| {
            question(
                f,
                match language {
                    Language::En => f.slot.en_question,
                    Language::Ru => f.slot.ru_question,
                },
            )
        })
        .collect();
    let held_out = facts
        .iter()
        .filter_map(|f| {
            let h = held_out(f.slot.key)?;
            Some(question(
                f,
                match language {
                    Language::En => h.en,
                    Language::Ru => h.ru,
                },
            ))
        })
        .collect();
    let pick = |en: &str, ru: &str| match language {
        Language::En => en.to_owned(),
        Language::Ru => ru.to_owned(),
    };
    let fact_of = |key: &str| facts.iter().find(|f| f.slot.key == key);
    let mut harder: Vec<Question> = SEVERAL_AT_ONCE
        .iter()
        .filter_map(|(keys, en, ru)| {
            let told: Option<Vec<&PlantedFact>> = keys.iter().map(|k| fact_of(k)).collect();
            let told = told?;
            let mut q = question(told[0], &pick(en, ru));
            q.also = told[1..].iter().map(|f| f.value.clone()).collect();
            // Only the first fact's wrong values are tracked (the outdated column).
            q.distractor = None;
            Some(q)
        })
        .collect();
    harder.extend(ASKED_AS_A_CHANGE.iter().filter_map(|(key, en, ru)| {
        let fact = fact_of(key).filter(|f| f.previous.is_some())?;
        Some(question(fact, &pick(en, ru)))
    }));
    User {
        id,
        language,
        messages,
        facts,
        questions,
        held_out,
        harder,
    }
}

/// Generates the data set of `sizes` from `seed` (the same seed gives the same data).
///
/// # Panics
/// If the planted messages outnumber `messages_per_user` (a programming error of the sizes).
#[must_use]
pub fn generate(sizes: &Sizes, seed: u64) -> Dataset {
    let planted =
        sizes.facts_per_user.min(SLOTS.len()) + sizes.updates_per_user + sizes.distractors_per_user;
    assert!(
        planted <= sizes.messages_per_user,
        "{planted} planted messages do not fit {} messages",
        sizes.messages_per_user
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let users = (0..sizes.users)
        .map(|i| {
            let language = if i % 2 == 0 {
                Language::Ru
            } else {
                Language::En
            };
            let id = 500_000 + i64::try_from(i).unwrap_or(0);
            user(id, language, sizes, &mut rng)
        })
        .collect();
    Dataset { users }
}

impl Dataset {
    /// What the oracle needs to know: which message states which fact, and which question
    /// asks for which key.
    #[must_use]
    pub fn knowledge(&self) -> Knowledge {
        let mut knowledge = Knowledge::default();
        for user in &self.users {
            let fact_of = |key: &str| user.facts.iter().find(|f| f.slot.key == key);
            // The values in the order they were told: the first statement, then the update.
            for message in &user.messages {
                let (fact, value) = match &message.said {
                    Said::Fact { key } => match fact_of(key) {
                        Some(fact) => (fact, fact.previous.as_ref().unwrap_or(&fact.value)),
                        None => continue,
                    },
                    Said::Update { key } => match fact_of(key) {
                        Some(fact) => (fact, &fact.value),
                        None => continue,
                    },
                    Said::SmallTalk | Said::Distractor { .. } => continue,
                };
                knowledge.statement(
                    message.text.clone(),
                    OracleFact {
                        key: fact.slot.key.to_owned(),
                        kind: fact.slot.kind.to_owned(),
                        text: fact_text(&fact.slot, user.language, value),
                        value: value.clone(),
                        cues: cues(fact.slot.key, user.language),
                    },
                );
            }
            for q in user
                .questions
                .iter()
                .chain(&user.held_out)
                .chain(&user.harder)
            {
                knowledge.question(q.text.clone(), q.key);
            }
        }
        knowledge
    }

    /// Questions over all users.
    #[must_use]
    pub fn question_count(&self) -> usize {
        self.users.iter().map(|u| u.questions.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Dataset {
        generate(&Sizes::FULL, 7)
    }

    #[test]
    fn the_full_set_has_enough_users_messages_facts_and_questions() {
        let data = full();
        assert!(data.users.len() >= 10);
        assert!(data.users.iter().any(|u| u.language == Language::Ru));
        assert!(data.users.iter().any(|u| u.language == Language::En));
        for user in &data.users {
            assert!(user.messages.len() >= 150, "{}", user.messages.len());
            assert!(user.facts.len() >= 40);
            let count =
                |f: &dyn Fn(&Said) -> bool| user.messages.iter().filter(|m| f(&m.said)).count();
            assert_eq!(count(&|s| matches!(s, Said::Fact { .. })), user.facts.len());
            assert!(count(&|s| matches!(s, Said::Update { .. })) >= 5);
            assert!(count(&|s| matches!(s, Said::Distractor { .. })) >= 5);
            assert!(count(&|s| *s == Said::SmallTalk) >= 80);
        }
        assert!(data.question_count() >= 200);
        for user in &data.users {
            assert_eq!(user.held_out.len(), user.questions.len());
        }
        let harder: usize = data.users.iter().map(|u| u.harder.len()).sum();
        let several: usize = data
            .users
            .iter()
            .flat_map(|u| &u.harder)
            .filter(|q| !q.also.is_empty())
            .count();
        assert!(
            several >= 50 && harder - several >= 20,
            "{several} + {}",
            harder - several
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let (a, b) = (full(), full());
        assert_eq!(a.users[3].messages, b.users[3].messages);
        assert_ne!(
            a.users[3].messages,
            generate(&Sizes::FULL, 8).users[3].messages
        );
    }

    #[test]
    fn an_update_comes_after_its_first_statement_and_questions_expect_the_new_value() {
        for user in &full().users {
            let at = |said: &Said| user.messages.iter().position(|m| m.said == *said);
            for fact in user.facts.iter().filter(|f| f.previous.is_some()) {
                let key = fact.slot.key;
                assert!(at(&Said::Fact { key }) < at(&Said::Update { key }), "{key}");
                let q = user.questions.iter().find(|q| q.key == key).unwrap();
                assert_eq!(q.expected, fact.value);
                assert_eq!(q.outdated, fact.previous);
            }
        }
    }

    #[test]
    fn values_are_distinct_per_user_and_absent_from_small_talk_and_questions() {
        for user in &full().users {
            let mut values: Vec<&String> = user.facts.iter().map(|f| &f.value).collect();
            values.extend(user.facts.iter().filter_map(|f| f.previous.as_ref()));
            values.extend(user.facts.iter().filter_map(|f| f.distractor.as_ref()));
            let distinct: HashSet<String> = values.iter().map(|v| normalise(v)).collect();
            assert_eq!(distinct.len(), values.len());
            for value in values {
                for m in user.messages.iter().filter(|m| m.said == Said::SmallTalk) {
                    assert!(!contains_value(&m.text, value), "{value} in {:?}", m.text);
                }
                for q in user
                    .questions
                    .iter()
                    .chain(&user.held_out)
                    .chain(&user.harder)
                {
                    assert!(!contains_value(&q.text, value), "{value} in {:?}", q.text);
                }
            }
        }
    }

    #[test]
    fn the_oracle_knows_both_values_of_an_update_and_nothing_of_a_distractor() {
        let data = full();
        let knowledge = data.knowledge();
        let user = &data.users[0];
        for m in &user.messages {
            let facts = knowledge.facts_stated_by(&m.text);
            match &m.said {
                Said::Fact { key } | Said::Update { key } => {
                    assert_eq!(facts.len(), 1, "{:?}", m.text);
                    assert_eq!(facts[0].key, *key);
                    assert!(contains_value(&m.text, &facts[0].value));
                    assert!(contains_value(&facts[0].text, &facts[0].value));
                }
                Said::SmallTalk | Said::Distractor { .. } => {
                    assert!(facts.is_empty(), "{:?}", m.text);
                }
            }
        }
    }

    #[test]
    fn whole_word_matching_ignores_case_and_yo() {
        assert!(contains_value("Город проживания: Тверь.", "тверь"));
        assert!(contains_value("Мой любимый — Фёдор", "Федор"));
        assert!(!contains_value("Emma's teacher", "Emm"));
        assert!(!contains_value("the lilacs", "lilac"));
    }
}
