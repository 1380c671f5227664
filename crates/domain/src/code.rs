//! The error of parsing a stored code (a role, a source, a fact kind, a lease scope): its own
//! module, so every module with codes depends on it and none on another.

use thiserror::Error;

/// A stored code that is not a known [`Role`](crate::memory::Role),
/// [`Source`](crate::memory::Source), [`FactKind`](crate::fact::FactKind) or
/// [`LeaseScope`](crate::ports::LeaseScope) (corrupt or foreign data).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownCode {
    /// Which enumeration was being parsed (`role`, `source`, `fact kind`, `lease scope`).
    pub kind: &'static str,
    /// The rejected value.
    pub value: String,
}
