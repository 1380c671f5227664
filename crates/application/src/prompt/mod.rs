//! Prompt assembly: templates, the token budget, trimming, and the personalisation service
//! that puts them together.

pub mod budget;
pub mod builder;
pub mod templates;
pub mod trim;

pub use budget::{BudgetError, BudgetProblem, PromptBudget};
pub use builder::{window_start, PersonalizationService, WINDOW_BLOCK};
