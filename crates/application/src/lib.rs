//! Use cases of Personalised Butler.

pub mod tokens;
