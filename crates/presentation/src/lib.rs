//! Front ends: Telegram bot, terminal chat, admin CLI and worker loop.
