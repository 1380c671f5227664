//! The held-out question set: one more question per fact, written apart from the planted
//! sentences and from the first question set — the way people ask. First person for facts the
//! extractor writes in the third («Где я живу?» for «Город проживания: Тверь»), other tenses,
//! cases and diminutives («сестрёнку», «Когда я родился?»), paraphrases that share no word
//! with the fact («Who do I report to at work?» for the boss). Reported as its own column.
//!
//! Beside each question, the *cues* a good extractor gives the fact when it is told: the words
//! a user would ask it with (what `templates::extractor_system` asks the model for in
//! `"terms"`). The oracle extractor returns them, so the benchmark measures what search terms
//! chosen at extraction are worth. They were written per fact, as an extractor would see it,
//! before and apart from the questions; a question matched only through a cue counts as a
//! paraphrase the index could not have found from the text alone.
//!
//! A third set, written after the first two and reported as its own row: questions that need
//! several facts at once («Как зовут моих детей?») and questions about an update worded as the
//! change («Куда я переехал?»), where the fact states the present («Город проживания: Пермь»).

/// One fact's held-out questions and extraction cues.
#[derive(Debug, Clone, Copy)]
pub struct HeldOut {
    /// The slot key.
    pub key: &'static str,
    /// English question.
    pub en: &'static str,
    /// Russian question.
    pub ru: &'static str,
    /// English cues, comma-separated.
    pub en_cues: &'static str,
    /// Russian cues, comma-separated.
    pub ru_cues: &'static str,
}

const fn h(
    key: &'static str,
    en: &'static str,
    ru: &'static str,
    en_cues: &'static str,
    ru_cues: &'static str,
) -> HeldOut {
    HeldOut {
        key,
        en,
        ru,
        en_cues,
        ru_cues,
    }
}

/// The held-out set, one entry per slot of [`super::data::SLOTS`].
#[rustfmt::skip]
pub const HELD_OUT: &[HeldOut] = &[
    h("sister_name", "Remind me, what's my sis called?", "Напомните, как мою сестрёнку звать?", "sister, sis, sibling", "сестра, сестрёнка"),
    h("brother_name", "Who's my brother again?", "Как там моего братишку зовут?", "brother, sibling", "брат, братишка"),
    h("mother_name", "How is my mum called?", "Как имя моей матери?", "mother, mum, mom", "мама, мать"),
    h("father_name", "What's my dad called?", "Как зовут отца?", "father, dad", "папа, отец"),
    h("wife_name", "Who am I married to?", "На ком я женат?", "wife, married, spouse", "жена, женат, супруга"),
    h("son_name", "What did we name our boy?", "Как мы назвали сына?", "son, boy", "сын, сынок"),
    h("daughter_name", "My girl's name, remind me?", "Как зовут нашу дочку?", "daughter, girl", "дочь, дочка"),
    h("boss_name", "Who do I report to at work?", "Кто мой руководитель на работе?", "boss, manager, work", "начальник, руководитель, работа"),
    h("best_friend_name", "Who is my closest friend?", "Кто мой самый близкий друг?", "friend, best friend, closest", "друг, лучший друг, близкий"),
    h("neighbour_name", "Who lives next door to me?", "Кто живёт по соседству со мной?", "neighbour, next door", "сосед, соседка, по соседству"),
    h("dentist_name", "Which dentist do I see?", "К какому стоматологу я хожу?", "dentist, teeth", "стоматолог, зубной врач"),
    h("grandmother_name", "What's my gran called?", "Как зовут бабулю?", "grandmother, gran, granny", "бабушка, бабуля"),
    h("cat_name", "What do we call our cat?", "Какая кличка у нашего кота?", "cat, kitten, pet", "кот, кошка, кличка"),
    h("dog_name", "What's the dog's name?", "Как кличут нашего пса?", "dog, puppy, pet", "собака, пёс, кличка"),
    h("piano_teacher_name", "Who teaches me piano?", "Кто учит меня музыке?", "piano, teacher, lessons", "учительница, музыка, учить"),
    h("birthday_date", "When was I born?", "Когда я родился?", "born, birthday, birth date", "родился, день рождения, дата рождения"),
    h("mother_birthday_date", "When does mum celebrate her birthday?", "Когда мама празднует день рождения?", "mother, mum, birthday", "мама, родилась, день рождения"),
    h("anniversary_date", "When did we get married?", "Когда мы поженились?", "married, wedding, anniversary", "свадьба, поженились, годовщина"),
    h("dentist_appointment_date", "When am I seeing the dentist?", "Когда мне к зубному?", "dentist, appointment", "стоматолог, зубной, запись"),
    h("concert_date", "When do I perform at the concert?", "Когда я выступаю на концерте?", "concert, perform, gig", "концерт, выступать"),
    h("flight_date", "When do I fly out?", "Когда я улетаю?", "flight, fly, plane", "рейс, лететь, улетать, самолёт"),
    h("exam_date", "When do I sit my exam?", "Когда я сдаю экзамен?", "exam, test", "экзамен, сдавать"),
    h("car_service_date", "When is the car going in for its check-up?", "Когда везти машину на осмотр?", "car, service, check", "машина, техосмотр, осмотр"),
    h("passport_renewal_date", "When do I renew my passport?", "Когда мне менять паспорт?", "passport, renew", "паспорт, менять, замена"),
    h("home_city", "Where do I live?", "Где я живу?", "live, home, city", "жить, город, дом"),
    h("birth_city", "Which town was I born in?", "В каком городе я родился?", "born, birthplace", "родился, место рождения"),
    h("work_city", "Which city do I work in?", "В каком городе я работаю?", "work, office", "работать, офис"),
    h("vacation_destination", "Where are we going on holiday?", "Куда мы едем в отпуск?", "holiday, vacation, trip, go", "отпуск, ехать, поездка"),
    h("sister_city", "Where does my sister live now?", "Где сейчас живёт сестра?", "sister, live", "сестра, жить"),
    h("favourite_cafe", "Which café do I like best?", "В какое кафе я люблю ходить?", "café, like, go", "кафе, любить, ходить"),
    h("gym", "Where do I work out?", "Где я тренируюсь?", "gym, work out, train", "спортзал, тренироваться, зал"),
    h("favourite_food", "What do I love to eat most?", "Что я больше всего люблю из еды?", "eat, food, dish, love", "еда, блюдо, любить"),
    h("favourite_drink", "What do I like to drink?", "Что я люблю пить?", "drink, like", "пить, напиток"),
    h("favourite_colour", "Which colour do I like most?", "Какой цвет мне нравится больше всего?", "colour, color, like", "цвет, нравиться"),
    h("favourite_sport", "What sport do I enjoy?", "Каким спортом я увлекаюсь?", "sport, play, enjoy", "спорт, заниматься, увлекаться"),
    h("favourite_book", "Which book do I love to reread?", "Какую книгу я люблю перечитывать?", "book, read", "книга, читать, перечитывать"),
    h("favourite_flower", "Which flowers should I be given?", "Какие цветы мне дарить?", "flower, flowers", "цветок, цветы"),
    h("allergy", "What am I allergic to?", "От чего у меня аллергическая реакция?", "allergic, allergy", "аллергия, аллергический"),
    h("promise_to_sister", "What did I promise my sister?", "Что я пообещал сестре?", "promise, sister", "обещать, пообещать, сестра"),
    h("promise_to_boss", "What did I tell my boss I would do?", "Что я обещал руководству?", "promise, boss, manager", "обещать, начальник, руководство"),
    h("promise_to_son", "What did I promise my boy?", "Что я пообещал сыну?", "promise, son, boy", "обещать, пообещать, сын"),
    h("butler_reminder", "What were you to remind me of?", "О чём мне нужно напомнить?", "remind, reminder", "напомнить, напоминание"),
    h("neighbour_city", "Where does my neighbour come from?", "Откуда родом мой сосед?", "neighbour, come from, hometown", "сосед, родом, родной город"),
    h("wedding_city", "Where did we get married?", "Где мы играли свадьбу?", "wedding, married", "свадьба, пожениться"),
];

/// A held-out question that needs several facts at once: `(keys, English, Russian)`. A user
/// is asked it when they told every one of its facts; it counts as retrieved only when the
/// prompt holds every value.
#[rustfmt::skip]
pub const SEVERAL_AT_ONCE: &[(&[&str], &str, &str)] = &[
    (&["son_name", "daughter_name"], "What are my children called?", "Как зовут моих детей?"),
    (&["mother_name", "father_name"], "What are my parents' names?", "Как зовут моих родителей?"),
    (&["sister_name", "brother_name"], "Who are my brother and sister?", "Как зовут моих брата и сестру?"),
    (&["cat_name", "dog_name"], "What are our pets called?", "Как зовут наших кота и собаку?"),
    (&["birthday_date", "mother_birthday_date"], "When are my birthday and my mum's?", "Когда дни рождения у меня и у мамы?"),
    (&["favourite_food", "favourite_drink"], "What do I like to eat and to drink?", "Что я люблю есть и пить?"),
    (&["home_city", "work_city"], "Where do I live and where do I work?", "Где я живу и где работаю?"),
    (&["concert_date", "exam_date"], "When are my concert and my exam?", "Когда у меня концерт и экзамен?"),
    (&["promise_to_sister", "promise_to_son"], "What did I promise my sister and my son?", "Что я обещал сестре и сыну?"),
    (&["dentist_name", "dentist_appointment_date"], "Who is my dentist and when do I see them?", "Как зовут моего стоматолога и когда к нему идти?"),
];

/// A held-out question about an update, worded as the change rather than the state:
/// `(key, English, Russian)`. Asked of a user whose fact of `key` was updated.
#[rustfmt::skip]
pub const ASKED_AS_A_CHANGE: &[(&str, &str, &str)] = &[
    ("home_city", "Where did I move to?", "Куда я переехал?"),
    ("work_city", "Where did my office move to?", "Куда перевели мой офис?"),
    ("sister_city", "Where did my sister move to?", "Куда переехала сестра?"),
    ("vacation_destination", "Where did we change our holiday to?", "Куда мы в итоге решили ехать в отпуск?"),
    ("favourite_drink", "What drink did I switch to?", "На какой напиток я перешёл?"),
    ("favourite_food", "Which dish do I prefer now?", "Какое блюдо мне теперь больше нравится?"),
    ("favourite_cafe", "Which café is my favourite now?", "Какое кафе у меня теперь любимое?"),
    ("favourite_colour", "Which colour do I like now?", "Какой цвет мне теперь нравится?"),
    ("favourite_sport", "Which sport do I do now?", "Каким спортом я теперь занимаюсь?"),
    ("gym", "Which gym did I switch to?", "В какой спортзал я перешёл?"),
    ("concert_date", "When was my concert moved to?", "На когда перенесли мой концерт?"),
    ("flight_date", "What date was my flight changed to?", "На какое число перенесли рейс?"),
    ("exam_date", "When was my exam rescheduled to?", "На когда перенесли экзамен?"),
    ("dentist_appointment_date", "When was my dentist appointment moved to?", "На когда перенесли запись к зубному?"),
    ("car_service_date", "When was the car service moved to?", "На когда перенесли техосмотр?"),
    ("passport_renewal_date", "When was the passport renewal moved to?", "На когда перенесли замену паспорта?"),
];

/// The held-out entry of `key`.
#[must_use]
pub fn held_out(key: &str) -> Option<&'static HeldOut> {
    HELD_OUT.iter().find(|h| h.key == key)
}

#[cfg(test)]
mod tests {
    use super::super::data::SLOTS;
    use super::*;

    #[test]
    fn every_slot_has_one_held_out_entry_unlike_its_first_question() {
        assert_eq!(HELD_OUT.len(), SLOTS.len());
        for slot in SLOTS {
            let h = held_out(slot.key).unwrap_or_else(|| panic!("{}", slot.key));
            assert_ne!(h.en, slot.en_question);
            assert_ne!(h.ru, slot.ru_question);
            assert!(!h.en_cues.is_empty() && !h.ru_cues.is_empty());
        }
        let known = |key: &str| SLOTS.iter().any(|s| s.key == key);
        for (keys, _, _) in SEVERAL_AT_ONCE {
            assert!(keys.len() >= 2 && keys.iter().all(|k| known(k)), "{keys:?}");
        }
        for (key, _, _) in ASKED_AS_A_CHANGE {
            let slot = SLOTS.iter().find(|s| s.key == *key).unwrap();
            assert_ne!(slot.kind, "person", "names are never updated: {key}");
        }
    }
}
