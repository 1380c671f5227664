//! The bot's settings: what the factory fills in from `Settings`, with defaults that suit a
//! self-hosted bot talking to the real Telegram.

use std::net::SocketAddr;
use std::time::Duration;

use butler_domain::UserId;
use secrecy::SecretString;

use super::drafts::DraftPacing;
use super::edits::GroupPacing;
use super::limits::Limits;

/// How to reach Telegram.
#[derive(Debug, Clone)]
pub struct BotSettings {
    /// The bot token from @BotFather (`TELEGRAM_BOT_TOKEN`). Never logged.
    pub token: SecretString,
    /// A Bot API server other than `https://api.telegram.org` (`TELEGRAM_API_URL`): a local
    /// Bot API server, or the fake one in tests.
    pub api_url: Option<String>,
    /// How updates arrive.
    pub delivery: Delivery,
    /// Behaviour.
    pub config: BotConfig,
}

/// How updates arrive from Telegram.
#[derive(Debug, Clone, Default)]
pub enum Delivery {
    /// `getUpdates` long polling (the default): no public address needed. Start-up removes a
    /// webhook left by an earlier webhook-mode run (`deleteWebhook`, keeping pending updates).
    #[default]
    Polling,
    /// Telegram POSTs updates to a public HTTPS URL (`TELEGRAM_WEBHOOK_URL`); the bot listens
    /// behind a reverse proxy or load balancer. Any number of processes may serve one bot.
    Webhook(WebhookConfig),
}

/// Webhook mode's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The public URL Telegram posts to (`https://…`); its path is the path served.
    pub url: url::Url,
    /// Where the bot listens (`TELEGRAM_WEBHOOK_LISTEN`).
    pub listen: SocketAddr,
    /// Telegram sends it in `X-Telegram-Bot-Api-Secret-Token` with every update; requests
    /// without it are refused. Every replica of one bot must use the same one.
    pub secret: SecretString,
    /// At most this many webhook requests at once from Telegram (`max_connections`, 1–100).
    pub max_connections: u8,
    /// A connection whose request line and headers take longer is closed unanswered
    /// ([`super::webhook::HEADER_READ_TIMEOUT`] in production).
    pub header_read_timeout: Duration,
    /// A request whose body takes longer to arrive gets `408` and its connection is closed
    /// ([`super::webhook::BODY_READ_TIMEOUT`] in production).
    pub body_read_timeout: Duration,
}

impl WebhookConfig {
    /// Webhook settings with the production limits: 40 connections (Telegram's default), the
    /// header and body read timeouts of [`super::webhook`].
    #[must_use]
    pub fn new(url: url::Url, listen: SocketAddr, secret: SecretString) -> Self {
        Self {
            url,
            listen,
            secret,
            max_connections: 40,
            header_read_timeout: super::webhook::HEADER_READ_TIMEOUT,
            body_read_timeout: super::webhook::BODY_READ_TIMEOUT,
        }
    }
}

/// How received updates are kept until answered (the durable inbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxConfig {
    /// How long a claim on a user's updates lasts unless renewed (it is renewed every third
    /// of it while the answer is being written): after a crash, that user's pending updates
    /// are taken over within this time.
    pub lease: Duration,
    /// How many users are answered at once by this process.
    pub workers: usize,
    /// How often the inbox is checked for work nobody announced (updates another replica
    /// received, leases that expired).
    pub poll_interval: Duration,
    /// Answered updates are remembered this long, so Telegram's redeliveries are dropped.
    pub retention: Duration,
    /// How often answered updates older than [`Self::retention`] are removed (at start, then
    /// every this long): hourly in production, shorter in tests.
    pub purge_every: Duration,
    /// An update whose answering was interrupted this many times (a crash each time, say) is
    /// given up, logged at `error`, instead of being tried forever.
    pub max_attempts: u32,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            workers: 256,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(2 * 24 * 3600),
            purge_every: Duration::from_secs(3600),
            max_attempts: 5,
        }
    }
}

/// Who the bot answers (`ALLOWED_USER_IDS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone who finds the bot (`*`): start-up logs a warning.
    Everyone,
    /// Only these users; nothing of anyone else is stored, and in a private chat they are
    /// told once, politely (in a group the butler stays silent).
    Only(Vec<UserId>),
}

/// The butler in group chats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Groups the butler works in (`ALLOWED_CHAT_IDS`); any member of one may address it. In
    /// any other group it says so once and leaves, storing nothing.
    pub allowed_chats: Vec<i64>,
    /// Names that address the butler at the start of a message («Альфред, …»;
    /// `BUTLER_NAMES`), besides an `@mention` and a reply to its message.
    pub names: Vec<String>,
    /// How replies stream in groups (edits of one message, within the group flood limit).
    pub pacing: GroupPacing,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            allowed_chats: Vec::new(),
            names: vec!["Альфред".to_owned(), "Alfred".to_owned()],
            pacing: GroupPacing::default(),
        }
    }
}

impl GroupConfig {
    /// Whether the butler works in group `chat_id`.
    #[must_use]
    pub fn allows(&self, chat_id: i64) -> bool {
        self.allowed_chats.contains(&chat_id)
    }
}

/// Behaviour of the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotConfig {
    /// Users allowed to talk to the butler in private chats.
    pub access: Access,
    /// Group chats.
    pub groups: GroupConfig,
    /// Default per-user limits (profiles may hold exceptions).
    pub limits: Limits,
    /// Longer voice notes are refused without downloading them.
    pub max_voice_duration: Duration,
    /// Larger voice notes are refused without downloading them (the Bot API serves ≤ 20 MB).
    pub max_voice_bytes: u64,
    /// How long a reply may take before "typing…" is shown: Telegram recommends the indicator
    /// only when an answer takes noticeably long, and a quick reply then costs no extra call.
    pub typing_delay: Duration,
    /// How often the "typing…" indicator is renewed (Telegram shows it for about 5 s).
    pub typing_interval: Duration,
    /// Deadline for producing one reply (model included); past it the user gets an apology.
    pub reply_timeout: Duration,
    /// Deadline for `getFile` + download of one voice note.
    pub voice_download_timeout: Duration,
    /// Long-poll timeout of `getUpdates`.
    pub poll_timeout: Duration,
    /// Deadline for any other Bot API call (`sendMessage`, `sendChatAction`, ...).
    pub request_timeout: Duration,
    /// Attempts per message sent (the first one included) when Telegram says "retry".
    pub max_send_attempts: u32,
    /// A `retry_after` longer than this is not waited for: the send is given up.
    pub max_retry_after: Duration,
    /// How many characters of a transcript open the reply to a voice note (0 = no quote).
    pub voice_quote_chars: usize,
    /// Live drafts of replies in private chats; a zero interval turns them off.
    pub drafts: DraftPacing,
    /// Replies that use Markdown go out as rich messages (Bot API 10.1), falling back to plain
    /// text when rejected.
    pub rich_messages: bool,
    /// The durable inbox of received updates.
    pub inbox: InboxConfig,
    /// On shutdown (SIGTERM), how long replies in flight may take to finish; those still
    /// running then are stopped and their updates released for the next process.
    pub shutdown_grace: Duration,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            access: Access::Only(Vec::new()),
            groups: GroupConfig::default(),
            limits: Limits::default(),
            max_voice_duration: Duration::from_secs(300),
            max_voice_bytes: 20 * 1024 * 1024,
            typing_delay: Duration::from_millis(300),
            typing_interval: Duration::from_secs(4),
            reply_timeout: Duration::from_secs(180),
            voice_download_timeout: Duration::from_secs(60),
            poll_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_send_attempts: 5,
            max_retry_after: Duration::from_secs(120),
            voice_quote_chars: 80,
            drafts: DraftPacing::default(),
            rich_messages: true,
            inbox: InboxConfig::default(),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl BotConfig {
    /// Whether `user_id` may talk to the butler.
    #[must_use]
    pub fn allows(&self, user_id: UserId) -> bool {
        match &self.access {
            Access::Everyone => true,
            Access::Only(ids) => ids.contains(&user_id),
        }
    }

    /// Every problem with the values, each naming the field (empty = valid).
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let positive = [
            ("typing_interval", self.typing_interval),
            ("reply_timeout", self.reply_timeout),
            ("voice_download_timeout", self.voice_download_timeout),
            ("poll_timeout", self.poll_timeout),
            ("request_timeout", self.request_timeout),
            ("inbox.lease", self.inbox.lease),
            ("inbox.poll_interval", self.inbox.poll_interval),
            ("inbox.retention", self.inbox.retention),
            ("inbox.purge_every", self.inbox.purge_every),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if self.inbox.workers == 0 {
            problems.push("inbox.workers must be at least 1".to_owned());
        }
        if self.inbox.max_attempts == 0 {
            problems.push("inbox.max_attempts must be at least 1".to_owned());
        }
        if self.max_send_attempts == 0 {
            problems.push("max_send_attempts must be at least 1".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_users_are_allowed_unless_the_bot_is_open_to_everyone() {
        let config = BotConfig::default();
        assert!(
            !config.allows(UserId::new(1)),
            "an empty list lets nobody in"
        );
        let config = BotConfig {
            access: Access::Only(vec![UserId::new(2)]),
            ..BotConfig::default()
        };
        assert!(!config.allows(UserId::new(1)));
        assert!(config.allows(UserId::new(2)));
        let config = BotConfig {
            access: Access::Everyone,
            ..BotConfig::default()
        };
        assert!(config.allows(UserId::new(1)));
    }

    #[test]
    fn zero_durations_are_reported_by_name() {
        let config = BotConfig {
            poll_timeout: Duration::ZERO,
            max_send_attempts: 0,
            ..BotConfig::default()
        };
        let problems = config.problems();
        assert!(problems.iter().any(|p| p.contains("poll_timeout")));
        assert!(problems.iter().any(|p| p.contains("max_send_attempts")));
    }
}
