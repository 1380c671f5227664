//! Wiring: settings in, use cases out. Chooses the storage backend (SQLite unless MongoDB is
//! configured), the LLM and speech-to-text clients, and the token counter, then builds every
//! use case the binaries need. Start-up fails here — with the setting to fix — rather than at
//! the first user message.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use butler_application::admin::{
    FactsUseCase, ListProfilesUseCase, ShowUserUseCase, UpdateProfileUseCase,
};
use butler_application::memory::{ExtractionFailure, MemoryWorkerUseCase};
use butler_application::tokens::ConservativeEstimator;
use butler_application::{
    CompressConfig, CompressMemoryUseCase, ObserveMessageUseCase, PersonalizationService,
    PersonalizedReplyUseCase, ReplyConfig, ResetPersonalizationUseCase,
};
use butler_domain::ports::{
    Clock, ConversationLeases, FactRepository, LlmClient, RequestOptions, SpeechToText,
    TokenCounter, UpdateInbox, UserMemoryRepository, UserProfileRepository,
};
use butler_domain::UserId;
use butler_infrastructure::clock::SystemClock;
use butler_infrastructure::llm::embedded::{
    default_threads, EmbeddedConfig, EmbeddedLlm, EmbeddedModel,
};
use butler_infrastructure::llm::models::{default_model, ModelStore};
use butler_infrastructure::llm::{LlmConcurrency, LlmHttpConfig, OpenAiChatClient};
use butler_infrastructure::mongo::{mask_uri, MongoOptions, MongoStore};
use butler_infrastructure::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use butler_infrastructure::stt::{OpenAiTranscriptionClient, SttHttpConfig};
use butler_infrastructure::tokens::{LlamaTokenizeCounter, ModelTokenCounter, QwenTiktokenCounter};
use secrecy::ExposeSecret;

use crate::compression_tasks::BackgroundCompressor;
use crate::metered::{MeteredFacts, MeteredLlm, MeteredProfiles, MeteredStt, ReplyMetrics};
use crate::settings::{
    LlmBackend, Settings, SqliteSynchronous, StorageSettings, TokenizerSettings,
};

/// Why the application could not be built. Messages name the setting and never a secret.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The storage backend could not be opened.
    #[error("storage: {0}")]
    Storage(String),
    /// No language model is configured.
    #[error(
        "LLM_BASE_URL is not set: point it at an OpenAI-compatible server, e.g. \
         LLM_BASE_URL=http://127.0.0.1:11434/v1 LLM_MODEL=qwen2.5:7b-instruct (Ollama); see docs/llm.md"
    )]
    NoLlm,
    /// The embedded engine's model could not be found, fetched or loaded.
    #[error("embedded LLM: {0}")]
    Model(String),
    /// An adapter rejected its configuration.
    #[error("{variable}: {message}")]
    Invalid {
        /// The setting to fix.
        variable: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The opened storage.
#[derive(Clone)]
pub struct Storage {
    /// Profiles.
    pub profiles: Arc<dyn UserProfileRepository>,
    /// Memory events.
    pub memory: Arc<dyn UserMemoryRepository>,
    /// Long-term facts.
    pub facts: Arc<dyn FactRepository>,
    /// The Telegram bot's update inbox; a starting bot takes it with [`Storage::inbox_for_bot`].
    pub inbox: Arc<dyn UpdateInbox>,
    /// The conversation leases every writer of a conversation's memory takes (the inbox's
    /// claims are among them).
    pub leases: Arc<dyn ConversationLeases>,
    /// Reminders.
    pub reminders: Arc<dyn butler_domain::ports::ReminderRepository>,
    /// The SQLite store, whose file serves one bot process (see [`Storage::inbox_for_bot`]).
    pub sqlite: Option<SqliteStore>,
    /// `sqlite` or `mongodb`, for logs.
    pub backend: &'static str,
    /// Where, for logs (credentials masked).
    pub location: String,
}

impl Storage {
    /// The inbox, ready for a starting bot. On SQLite the bot takes ownership of the file:
    /// a second live bot on it is refused (naming the file), and the leases of the bot before
    /// are voided, so the updates a crash interrupted are answered at once instead of after
    /// their leases expire; on MongoDB, other replicas' leases are left alone.
    ///
    /// # Errors
    /// [`BuildError::Storage`] when another bot owns the SQLite file or the database cannot
    /// be written.
    pub async fn inbox_for_bot(&self) -> Result<Arc<dyn UpdateInbox>, BuildError> {
        if let Some(store) = &self.sqlite {
            let voided = store
                .take_ownership()
                .await
                .map_err(|e| BuildError::Storage(e.to_string()))?;
            if voided > 0 {
                tracing::info!(
                    voided,
                    "leases of the previous run voided: its unfinished updates are answered now"
                );
            }
        }
        Ok(Arc::clone(&self.inbox))
    }
}

/// Opens the configured storage, applying migrations / creating indexes.
///
/// # Errors
/// [`BuildError::Storage`] naming the file or the masked URI.
pub async fn open_storage(settings: &Settings) -> Result<Storage, BuildError> {
    match &settings.storage {
        StorageSettings::Sqlite { path, synchronous } => {
            let store = SqliteStore::open(SqliteOptions {
                path: path.clone(),
                synchronous: match synchronous {
                    SqliteSynchronous::Full => Synchronous::Full,
                    SqliteSynchronous::Normal => Synchronous::Normal,
                },
                ..SqliteOptions::default()
            })
            .await
            .map_err(|e| BuildError::Storage(e.to_string()))?;
            // Read back from SQLite itself, so the log says what a commit really survives.
            let in_effect = store
                .synchronous()
                .await
                .map_err(|e| BuildError::Storage(e.to_string()))?;
            let inbox = Arc::new(store.inbox());
            Ok(Storage {
                profiles: Arc::new(store.profiles()),
                memory: Arc::new(store.memory()),
                facts: Arc::new(store.facts()),
                reminders: Arc::new(store.reminders()),
                leases: inbox.clone(),
                inbox,
                sqlite: Some(store),
                backend: "sqlite",
                location: format!(
                    "{} (synchronous={})",
                    path.display(),
                    in_effect.pragma().to_ascii_lowercase()
                ),
            })
        }
        StorageSettings::Mongo {
            uri,
            database,
            ttl_days,
        } => {
            let options = MongoOptions {
                database: Some(database.clone()),
                memory_ttl: ttl_days.map(|d| Duration::from_secs(u64::from(d) * 86_400)),
                inbox_retention: settings.telegram.inbox_retention,
                ..MongoOptions::default()
            };
            let store = MongoStore::connect(uri.expose_secret(), options)
                .await
                .map_err(|e| BuildError::Storage(e.to_string()))?;
            let inbox = Arc::new(store.inbox());
            Ok(Storage {
                profiles: Arc::new(store.profiles()),
                memory: Arc::new(store.memory()),
                facts: Arc::new(store.facts()),
                reminders: Arc::new(store.reminders()),
                leases: inbox.clone(),
                inbox,
                sqlite: None,
                backend: "mongodb",
                location: format!("{}/{database}", mask_uri(uri.expose_secret())),
            })
        }
    }
}

/// Applies migrations (SQLite) or creates indexes (MongoDB); both are idempotent and also run
/// whenever storage is opened.
///
/// # Errors
/// As [`open_storage`].
pub async fn migrate(settings: &Settings) -> Result<String, BuildError> {
    let storage = open_storage(settings).await?;
    Ok(format!(
        "{} at {}: schema and indexes are up to date",
        storage.backend, storage.location
    ))
}

/// The token counter chosen by `TOKENIZER`.
///
/// # Errors
/// [`BuildError::Invalid`] if the vocabulary cannot be loaded or the URL is invalid.
pub async fn token_counter(settings: &Settings) -> Result<Arc<dyn TokenCounter>, BuildError> {
    let estimator: Arc<dyn TokenCounter> = Arc::new(ConservativeEstimator::new());
    match &settings.tokenizer {
        TokenizerSettings::Estimator => Ok(estimator),
        TokenizerSettings::QwenTiktoken { path } => {
            let path = path.clone();
            let counter = tokio::task::spawn_blocking(move || QwenTiktokenCounter::from_file(path))
                .await
                .map_err(|e| BuildError::Invalid {
                    variable: "TOKENIZER_PATH",
                    message: e.to_string(),
                })?
                .map_err(|e| BuildError::Invalid {
                    variable: "TOKENIZER_PATH",
                    message: e.to_string(),
                })?;
            Ok(Arc::new(counter))
        }
        TokenizerSettings::LlamaTokenize { url } => {
            LlamaTokenizeCounter::new(url, Duration::from_millis(500), estimator)
                .map(|c| Arc::new(c) as Arc<dyn TokenCounter>)
                .map_err(|e| BuildError::Invalid {
                    variable: "TOKENIZER_URL",
                    message: e.to_string(),
                })
        }
    }
}

/// The HTTP language model client: one server, or a pool of the servers `LLM_BASE_URL`
/// lists. Replies and compression (the bot's background compressions and the memory worker,
/// which builds the same client) share it, and so share its limits: `LLM_MAX_CONCURRENCY`
/// requests per server, admitted in arrival order.
///
/// # Errors
/// [`BuildError::NoLlm`] without `LLM_BASE_URL`; [`BuildError::Invalid`] for a bad URL.
pub fn llm_client(settings: &Settings) -> Result<Arc<dyn LlmClient>, BuildError> {
    llm_client_for(settings, Workload::Replies)
}

/// Who a process's language model serves, which decides whether background requests leave a
/// slot free for replies (see `LlmConcurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Replies first, background work (compression) when they leave room: the bot.
    Replies,
    /// Background work alone: `memory-worker`, whose compressions may use every slot.
    BackgroundOnly,
}

/// The concurrency limit for `limit` slots and `workload`.
fn concurrency(limit: NonZeroUsize, workload: Workload) -> LlmConcurrency {
    match workload {
        Workload::Replies => LlmConcurrency::new(limit),
        Workload::BackgroundOnly => LlmConcurrency::new(limit).without_reply_reserve(),
    }
}

/// [`llm_client`] for a process of `workload`.
///
/// # Errors
/// As [`llm_client`].
pub fn llm_client_for(
    settings: &Settings,
    workload: Workload,
) -> Result<Arc<dyn LlmClient>, BuildError> {
    if settings.llm.base_urls.is_empty() {
        return Err(BuildError::NoLlm);
    }
    let per_server = NonZeroUsize::new(settings.llm.max_concurrency).unwrap_or(NonZeroUsize::MIN);
    let total = NonZeroUsize::new(settings.llm.total_concurrency()).unwrap_or(per_server);
    let config = LlmHttpConfig {
        api_key: settings.llm.api_key.clone(),
        request_timeout: settings.llm.timeout,
        concurrency: concurrency(total, workload),
        server_limit: Some(per_server),
        ..LlmHttpConfig::new(settings.llm.base_urls.join(","), settings.llm.model.clone())
    };
    OpenAiChatClient::new(config)
        .map(|c| Arc::new(c) as Arc<dyn LlmClient>)
        .map_err(|e| BuildError::Invalid {
            variable: "LLM_BASE_URL",
            message: e.to_string(),
        })
}

/// The language model chosen by `LLM_BACKEND` and the token counter that goes with it.
pub struct Engine {
    /// Answers.
    pub llm: Arc<dyn LlmClient>,
    /// Counts prompt tokens: the embedded model's own vocabulary, or `TOKENIZER` for http.
    pub counter: Arc<dyn TokenCounter>,
    /// `embedded` or `http`, for logs.
    pub backend: &'static str,
    /// The model file or server, for logs.
    pub location: String,
}

/// Builds the engine: for `http` the client of `LLM_BASE_URL` and the `TOKENIZER` counter;
/// for `embedded` the GGUF model (`LLM_GGUF_PATH`, else the default model, downloaded into
/// `LLM_MODELS_DIR` on first use), loaded once and shared by the client and the counter.
///
/// # Errors
/// [`BuildError::Model`] naming the file when it is missing, corrupt or cannot be fetched;
/// [`BuildError::Invalid`] when prompt budget + `LLM_MAX_TOKENS` exceed the model's window.
pub async fn engine(settings: &Settings) -> Result<Engine, BuildError> {
    engine_for(settings, Workload::Replies).await
}

/// [`engine`] for a process of `workload`.
///
/// # Errors
/// As [`engine`].
pub async fn engine_for(settings: &Settings, workload: Workload) -> Result<Engine, BuildError> {
    match settings.llm.backend {
        LlmBackend::Http => Ok(Engine {
            llm: llm_client_for(settings, workload)?,
            counter: token_counter(settings).await?,
            backend: "http",
            location: settings.llm.base_urls.join(","),
        }),
        LlmBackend::Embedded => {
            let path = model_path(settings).await?;
            let model = tokio::task::spawn_blocking(move || EmbeddedModel::load(path))
                .await
                .map_err(|e| BuildError::Model(e.to_string()))?
                .map_err(|e| BuildError::Model(e.to_string()))?;
            let context_tokens = context_window(settings, &model)?;
            let model = Arc::new(model);
            let limit =
                NonZeroUsize::new(settings.llm.max_concurrency).unwrap_or(NonZeroUsize::MIN);
            let llm = EmbeddedLlm::new(
                Arc::clone(&model),
                EmbeddedConfig {
                    context_tokens,
                    request_timeout: settings.llm.timeout,
                    concurrency: concurrency(limit, workload),
                    cache_slots: settings.llm.cache_slots,
                    threads: settings
                        .llm
                        .threads
                        .and_then(|t| i32::try_from(t).ok())
                        .unwrap_or_else(default_threads),
                },
            )
            .map_err(|e| BuildError::Model(e.to_string()))?;
            Ok(Engine {
                location: model.path().display().to_string(),
                counter: Arc::new(ModelTokenCounter::new(model)),
                llm: Arc::new(llm),
                backend: "embedded",
            })
        }
    }
}

/// `LLM_GGUF_PATH`, or the default model in `LLM_MODELS_DIR`, fetched if it is not there yet.
async fn model_path(settings: &Settings) -> Result<std::path::PathBuf, BuildError> {
    if let Some(path) = &settings.llm.gguf_path {
        return Ok(path.clone());
    }
    let store = ModelStore::new(&settings.llm.models_dir);
    let spec = default_model();
    let path = store.path_of(&spec);
    if path.is_file() {
        return Ok(path);
    }
    tracing::info!(
        model = %spec.name,
        bytes = spec.size,
        into = %store.dir().display(),
        "downloading the default model on first use (set LLM_GGUF_PATH to use another)"
    );
    store
        .pull(&spec)
        .await
        .map_err(|e| BuildError::Model(e.to_string()))
}

/// Cells of KV cache added to a reply's own need (prompt budget + `LLM_MAX_TOKENS`, rounded up
/// to [`SLOT_ROUNDING`]) in each slot of the embedded engine: room for the compression's
/// summariser (see [`fold_max_tokens`]).
pub const SLOT_HEADROOM: usize = 512;

/// Slot sizes are a multiple of this (llama.cpp pads a stream's cells to 256 anyway).
pub const SLOT_ROUNDING: usize = 256;

/// What the compression's summariser request needs besides the conversation it folds, the
/// previous summary and its own `max_tokens`: its instructions (≈ 200 tokens in English,
/// up to ≈ 500 in Russian with a small model's vocabulary), the JSON framing and the chat
/// template.
pub const SUMMARISER_OVERHEAD: usize = 768;

/// The cells of one KV-cache slot of the embedded engine, from what can be asked of it: the
/// prompt budget (`PROMPT_TOTAL_TOKENS`) plus a reply (`LLM_MAX_TOKENS`), rounded up to
/// [`SLOT_ROUNDING`], plus [`SLOT_HEADROOM`] — at most `LLM_CONTEXT_WINDOW`. With the defaults
/// 3072 instead of 4096: llama.cpp applies a pending KV shift (a conversation's window moved)
/// to every cell of every slot, so fewer cells make every window move cheaper.
#[must_use]
pub fn embedded_slot_tokens(settings: &Settings) -> usize {
    let reply = settings
        .budget
        .total
        .saturating_add(settings.budget.max_reply_tokens);
    reply
        .div_ceil(SLOT_ROUNDING)
        .saturating_mul(SLOT_ROUNDING)
        .saturating_add(SLOT_HEADROOM)
        .min(settings.budget.model_window)
}

/// The most tokens one request may hold (prompt + reply): the embedded engine's slot, or the
/// server's `LLM_CONTEXT_WINDOW`.
#[must_use]
pub fn request_window(settings: &Settings) -> usize {
    match settings.llm.backend {
        LlmBackend::Embedded => embedded_slot_tokens(settings),
        LlmBackend::Http => settings.budget.model_window,
    }
}

/// Conversation tokens one summariser call folds: the compression's default (2500), fewer when
/// the request window could not hold them with the previous summary
/// (`MEMORY_SUMMARY_TOKENS`), the summariser's `max_tokens` and [`SUMMARISER_OVERHEAD`]; at
/// least 256 (a smaller window is refused cleanly by the engine: the compression fails and
/// deletes nothing). The fact extractor reads the same conversation plus up to 60 known facts;
/// when those do not fit, that extraction fails cleanly (reported, the summary goes on).
#[must_use]
pub fn fold_max_tokens(settings: &Settings) -> usize {
    let defaults = CompressConfig::default();
    request_window(settings)
        .saturating_sub(settings.memory.summary_tokens)
        .saturating_sub(defaults.options.max_tokens as usize)
        .saturating_sub(SUMMARISER_OVERHEAD)
        .clamp(256, defaults.fold_max_tokens.max(256))
}

/// The context the embedded engine allocates per slot: [`embedded_slot_tokens`], capped by the
/// window the model was trained with; the prompt budget plus `LLM_MAX_TOKENS` must fit in it.
fn context_window(settings: &Settings, model: &EmbeddedModel) -> Result<u32, BuildError> {
    let trained = model.context_window();
    let window = u32::try_from(settings.budget.model_window)
        .unwrap_or(u32::MAX)
        .min(trained);
    let needed = settings
        .budget
        .total
        .saturating_add(settings.budget.max_reply_tokens);
    if needed > window as usize {
        return Err(BuildError::Invalid {
            variable: "PROMPT_TOTAL_TOKENS",
            message: format!(
                "prompt budget ({}) + LLM_MAX_TOKENS ({}) = {needed} tokens do not fit the \
                 {window}-token context of {} (trained window {trained}, LLM_CONTEXT_WINDOW {}); \
                 lower PROMPT_TOTAL_TOKENS or LLM_MAX_TOKENS",
                settings.budget.total,
                settings.budget.max_reply_tokens,
                model.path().display(),
                settings.budget.model_window
            ),
        });
    }
    Ok(u32::try_from(embedded_slot_tokens(settings))
        .unwrap_or(u32::MAX)
        .min(window))
}

/// The speech-to-text client, if `STT_BASE_URL` is set.
///
/// # Errors
/// [`BuildError::Invalid`] for a bad URL.
pub fn stt_client(settings: &Settings) -> Result<Option<Arc<dyn SpeechToText>>, BuildError> {
    let Some(base_url) = settings.stt.base_url.clone() else {
        return Ok(None);
    };
    let config = SttHttpConfig {
        language: settings.stt.language.clone(),
        request_timeout: settings.stt.timeout,
        max_upload_bytes: settings.telegram.voice_max_bytes,
        ..SttHttpConfig::new(base_url, settings.stt.model.clone())
    };
    OpenAiTranscriptionClient::new(config)
        .map(|c| Some(Arc::new(c) as Arc<dyn SpeechToText>))
        .map_err(|e| BuildError::Invalid {
            variable: "STT_BASE_URL",
            message: e.to_string(),
        })
}

/// Everything the binaries run.
pub struct App {
    /// Storage in use.
    pub storage: Storage,
    /// Answers messages.
    pub reply: Arc<PersonalizedReplyUseCase>,
    /// Keeps group lines nobody addressed to the butler as the group's context.
    pub observe: Arc<ObserveMessageUseCase>,
    /// Forgets a user.
    pub reset: ResetPersonalizationUseCase,
    /// Folds older memory into the summary.
    pub compress: CompressMemoryUseCase,
    /// Background compressions triggered by replies (drain it on shutdown).
    pub compressor: Arc<BackgroundCompressor>,
    /// One worker run.
    pub worker: MemoryWorkerUseCase,
    /// Admin operations.
    pub list: ListProfilesUseCase,
    /// Admin show/export.
    pub show: ShowUserUseCase,
    /// Admin update.
    pub update: UpdateProfileUseCase,
    /// Speech-to-text, if configured.
    pub stt: Option<Arc<dyn SpeechToText>>,
    /// Reminder requests (the bot uses it when `REMINDERS_ENABLED`).
    pub reminders: Arc<butler_application::reminders::ManageRemindersUseCase>,
    /// Time zone proposals from the conversation (with reminders, when personalisation is
    /// on: a stateless bot keeps nothing about where anyone lives).
    pub zones: Option<Arc<butler_application::reminders::ZoneOfferUseCase>>,
    /// Reminders offered from memory (with reminders, personalisation and facts on): the bot
    /// makes them after each extraction, to users who turned them on.
    pub offers: Option<butler_presentation::telegram::OfferDeps>,
}

/// Builds the use cases over already-opened storage and a given LLM (tests inject their own).
///
/// # Errors
/// [`BuildError::Invalid`] if the prompt budget is unusable.
pub fn assemble(
    settings: &Settings,
    storage: Storage,
    llm: Arc<dyn LlmClient>,
    counter: Arc<dyn TokenCounter>,
    stt: Option<Arc<dyn SpeechToText>>,
) -> Result<App, BuildError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let llm: Arc<dyn LlmClient> = Arc::new(MeteredLlm(llm));
    let stt = stt.map(|s| Arc::new(MeteredStt(s)) as Arc<dyn SpeechToText>);
    let profiles: Arc<dyn UserProfileRepository> =
        Arc::new(MeteredProfiles(storage.profiles.clone()));
    let personalization =
        PersonalizationService::new(counter.clone(), settings.budget).map_err(|e| {
            BuildError::Invalid {
                variable: "PROMPT_TOTAL_TOKENS",
                message: e.to_string(),
            }
        })?;
    let facts: Arc<dyn FactRepository> = Arc::new(MeteredFacts(storage.facts.clone()));
    let mut compress = CompressMemoryUseCase::new(
        profiles.clone(),
        storage.memory.clone(),
        llm.clone(),
        counter,
        clock.clone(),
        storage.leases.clone(),
        CompressConfig {
            threshold: settings.memory.compress_threshold,
            keep_last: settings.memory.keep_last,
            summary_max_tokens: settings.memory.summary_tokens,
            fold_max_tokens: fold_max_tokens(settings),
            lease: compression_lease(settings),
            ..CompressConfig::default()
        },
    );
    if settings.memory.facts_enabled {
        compress = compress
            .with_facts(facts.clone())
            .on_extraction_failure(Arc::new(|failure: ExtractionFailure| {
                butler_infrastructure::telemetry::metrics::record_fact_extraction_failure(
                    failure.code(),
                );
            }));
    }
    // Reminders offered from memory: each run that stores facts names its user to the bot's
    // offer task (a full queue drops the name: the user's next extraction looks again).
    let offers_on = settings.reminders.enabled
        && settings.personalization_enabled
        && settings.memory.facts_enabled;
    let (facts_stored, facts_stored_rx) = tokio::sync::mpsc::channel::<UserId>(1024);
    if offers_on {
        compress = compress.on_facts_stored(Arc::new(move |user: UserId| {
            let _ = facts_stored.try_send(user);
        }));
    }
    let compressor = Arc::new(BackgroundCompressor::new(
        compress.clone(),
        Some(Arc::new(crate::metrics::record_compression)),
    ));
    let mut reply = PersonalizedReplyUseCase::new(
        profiles.clone(),
        storage.memory.clone(),
        llm.clone(),
        clock.clone(),
        personalization,
        compressor.clone(),
        ReplyConfig {
            recent_limit: settings.memory.recent_events,
            compress_threshold: settings.memory.compress_threshold,
            compress_idle: settings.memory.compress_idle,
            compress_hard_limit: settings.memory.compress_hard_limit,
            options: RequestOptions {
                temperature: settings.llm.temperature,
                max_tokens: u32::try_from(settings.budget.max_reply_tokens).unwrap_or(u32::MAX),
            },
            personalization_enabled: settings.personalization_enabled,
        },
    )
    .with_observer(Arc::new(ReplyMetrics));
    if settings.memory.facts_enabled {
        reply = reply.with_facts(facts);
    }
    let reply = Arc::new(reply);
    let observe = Arc::new(ObserveMessageUseCase::new(
        profiles.clone(),
        storage.memory.clone(),
        clock.clone(),
        compressor.clone(),
        settings.memory.compress_threshold,
    ));
    let reminders = Arc::new(
        butler_application::reminders::ManageRemindersUseCase::new(
            storage.reminders.clone(),
            llm.clone(),
            butler_application::reminders::RemindersConfig {
                max_pending: settings.reminders.max_per_user,
                horizon: time::Duration::days(i64::from(settings.reminders.horizon_days)),
                default_zone: settings.reminders.default_zone.clone(),
            },
            Some(Arc::new(crate::metered::ReminderMetrics)),
        )
        .with_profiles(profiles.clone()),
    );
    let zones = settings.personalization_enabled.then(|| {
        let zones = butler_application::reminders::ZoneOfferUseCase::new(
            profiles.clone(),
            clock.clone(),
            settings.reminders.default_zone.clone(),
        );
        Arc::new(if settings.memory.facts_enabled {
            zones.with_facts(storage.facts.clone())
        } else {
            zones
        })
    });
    let offers = offers_on.then(|| butler_presentation::telegram::OfferDeps {
        use_case: Arc::new(butler_application::reminders::ReminderOfferUseCase::new(
            profiles.clone(),
            storage.facts.clone(),
            reminders.clone(),
            clock.clone(),
            time::Duration::days(i64::from(settings.reminders.horizon_days)),
            Some(Arc::new(crate::metered::ReminderMetrics)),
        )),
        facts_stored: Arc::new(tokio::sync::Mutex::new(facts_stored_rx)),
    });
    Ok(App {
        reminders,
        zones,
        offers,
        reset: reset_use_case(&storage, clock.clone()),
        worker: MemoryWorkerUseCase::new(storage.memory.clone(), compress.clone()),
        list: ListProfilesUseCase::new(storage.profiles.clone(), storage.memory.clone()),
        show: ShowUserUseCase::new(
            storage.profiles.clone(),
            storage.memory.clone(),
            storage.facts.clone(),
        )
        .with_reminders(
            storage.reminders.clone(),
            settings.reminders.default_zone.clone(),
        ),
        update: UpdateProfileUseCase::new(storage.profiles.clone(), clock),
        compress,
        compressor,
        reply,
        observe,
        stt,
        storage,
    })
}

/// How long a compression's lease lasts between renewals: its slowest step is one model call
/// (`LLM_TIMEOUT_SECS`, plus the wait for the model behind replies), so twice that and a
/// minute more; a process that dies mid-compression holds its conversation's compressions
/// back at most that long (replies never wait for it).
fn compression_lease(settings: &Settings) -> time::Duration {
    let llm = time::Duration::try_from(settings.llm.timeout).unwrap_or(time::Duration::MINUTE);
    llm.saturating_mul(2).saturating_add(time::Duration::MINUTE)
}

fn reset_use_case(storage: &Storage, clock: Arc<dyn Clock>) -> ResetPersonalizationUseCase {
    ResetPersonalizationUseCase::new(
        storage.profiles.clone(),
        storage.memory.clone(),
        storage.facts.clone(),
        storage.leases.clone(),
        clock,
    )
    .with_reminders(storage.reminders.clone())
}

/// Opens storage and builds every use case from the settings.
///
/// # Errors
/// The first [`BuildError`]: STT configuration, LLM engine and token counter, storage.
pub async fn build(settings: &Settings) -> Result<App, BuildError> {
    build_for(settings, Workload::Replies).await
}

/// [`build`] for a process of `workload` (`memory-worker` serves no replies).
///
/// # Errors
/// As [`build`].
pub async fn build_for(settings: &Settings, workload: Workload) -> Result<App, BuildError> {
    let stt = stt_client(settings)?;
    let Engine {
        llm,
        counter,
        backend,
        location: model,
    } = engine_for(settings, workload).await?;
    let storage = open_storage(settings).await?;
    tracing::info!(
        storage = storage.backend,
        location = %storage.location,
        llm = backend,
        %model,
        tokenizer = counter.name(),
        voice = stt.is_some(),
        personalization = settings.personalization_enabled,
        "butler wired"
    );
    assemble(settings, storage, llm, counter, stt)
}

/// Stands in for the language model where none may be loaded (`memory-worker --dry-run`):
/// every call is rejected, and nothing on those paths makes one.
struct NoModel;

#[async_trait::async_trait]
impl LlmClient for NoModel {
    async fn complete(
        &self,
        _request: &butler_domain::ports::LlmRequest,
    ) -> Result<butler_domain::ports::LlmReply, butler_domain::ports::LlmError> {
        Err(butler_domain::ports::LlmError::Rejected {
            detail: "no language model is loaded in this mode".to_owned(),
        })
    }
}

/// Opens storage and builds the use cases without a language model (nothing is loaded or
/// downloaded, no server is contacted): for listing what a worker run would do.
///
/// # Errors
/// [`BuildError::Storage`] if the storage cannot be opened.
pub async fn build_without_model(settings: &Settings) -> Result<App, BuildError> {
    let storage = open_storage(settings).await?;
    let counter: Arc<dyn TokenCounter> = Arc::new(ConservativeEstimator::new());
    assemble(settings, storage, Arc::new(NoModel), counter, None)
}

/// The use cases `profile_admin` drives: no LLM, speech or token counter needed.
#[derive(Clone)]
pub struct AdminUseCases {
    /// `list`.
    pub list: ListProfilesUseCase,
    /// `show` and `export`.
    pub show: ShowUserUseCase,
    /// `update`.
    pub update: UpdateProfileUseCase,
    /// `reset`.
    pub reset: ResetPersonalizationUseCase,
    /// `facts`.
    pub facts: FactsUseCase,
    /// `reminders`.
    pub reminders: butler_application::admin::RemindersAdminUseCase,
}

/// Builds the admin use cases over already-opened storage (`settings` give the default time
/// zone reminders are shown in).
#[must_use]
pub fn admin_use_cases(settings: &Settings, storage: &Storage) -> AdminUseCases {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let default_zone = settings.reminders.default_zone.clone();
    AdminUseCases {
        list: ListProfilesUseCase::new(storage.profiles.clone(), storage.memory.clone()),
        show: ShowUserUseCase::new(
            storage.profiles.clone(),
            storage.memory.clone(),
            storage.facts.clone(),
        )
        .with_reminders(storage.reminders.clone(), default_zone.clone()),
        reminders: butler_application::admin::RemindersAdminUseCase::new(
            storage.profiles.clone(),
            storage.reminders.clone(),
            clock.clone(),
            default_zone,
        ),
        update: UpdateProfileUseCase::new(storage.profiles.clone(), clock.clone()),
        reset: reset_use_case(storage, clock),
        facts: FactsUseCase::new(storage.profiles.clone(), storage.facts.clone()),
    }
}
