//! The token budget of a prompt: how many tokens each part may use, and the start-up check
//! that the prompt plus the reply fit the model's context window.

use thiserror::Error;

/// Token limits for one prompt. Defaults come from the original plan: a 2000-token prompt
/// (persona 200, summary 300, memory 800, new message 200, the rest template overhead) and a
/// 512-token reply in a 4096-token window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    /// The whole prompt, including chat-template overhead.
    pub total: usize,
    /// The persona section (instructions, persona, topics).
    pub persona: usize,
    /// The memory summary.
    pub summary: usize,
    /// The recent conversation turns and the remembered facts together.
    pub memory: usize,
    /// Of `memory`, the most the remembered facts may use (core facts in the system message,
    /// facts relevant to the message beside it); `0` leaves facts out of prompts.
    pub facts: usize,
    /// The user's new message.
    pub new_message: usize,
    /// Events always kept when turns are dropped (then their text is trimmed instead).
    pub min_recent_events: usize,
    /// Tokens the chat template adds around each message (`<|im_start|>role\n … <|im_end|>\n`).
    pub per_message_overhead: usize,
    /// The model's context window.
    pub model_window: usize,
    /// `max_tokens` of a reply.
    pub max_reply_tokens: usize,
}

impl Default for PromptBudget {
    fn default() -> Self {
        Self {
            total: 2000,
            persona: 200,
            summary: 300,
            memory: 800,
            facts: 200,
            new_message: 200,
            min_recent_events: 5,
            per_message_overhead: 5,
            model_window: 4096,
            max_reply_tokens: 512,
        }
    }
}

/// One reason a budget configuration is unusable. Field names are the settings' names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BudgetProblem {
    /// The prompt and the reply together do not fit the context window.
    #[error(
        "prompt budget ({total}) + reply max_tokens ({max_reply_tokens}) = {sum} exceeds the model window ({model_window}); \
         lower PROMPT_TOTAL_TOKENS or LLM_MAX_TOKENS, or raise LLM_CONTEXT_WINDOW for a model with a larger window"
    )]
    ExceedsWindow {
        /// Prompt budget.
        total: usize,
        /// Reply budget.
        max_reply_tokens: usize,
        /// Their sum.
        sum: usize,
        /// The window.
        model_window: usize,
    },
    /// A limit that must be positive is zero.
    #[error("{name} must be at least 1")]
    Zero {
        /// Which setting.
        name: &'static str,
    },
    /// The facts' share is larger than the memory section it is part of.
    #[error(
        "facts ({facts}, PROMPT_FACTS_TOKENS) must not exceed the memory section it is part of ({memory}, PROMPT_MEMORY_TOKENS)"
    )]
    FactsExceedMemory {
        /// Facts budget.
        facts: usize,
        /// Memory budget.
        memory: usize,
    },
    /// The parts cannot fit the whole even with no recent turns.
    #[error(
        "persona ({persona}, PROMPT_PERSONA_TOKENS) + summary ({summary}, PROMPT_SUMMARY_TOKENS) + facts ({facts}, PROMPT_FACTS_TOKENS) + new message ({new_message}, PROMPT_NEW_MESSAGE_TOKENS) budgets leave no room for recent turns in a {total}-token prompt (PROMPT_TOTAL_TOKENS)"
    )]
    PartsExceedTotal {
        /// Persona budget.
        persona: usize,
        /// Summary budget.
        summary: usize,
        /// Facts budget (core facts in the system message, relevant ones beside the message).
        facts: usize,
        /// New-message budget.
        new_message: usize,
        /// Whole budget.
        total: usize,
    },
}

/// All problems of a budget, reported together.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid prompt budget: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct BudgetError {
    /// Every problem found.
    pub problems: Vec<BudgetProblem>,
}

impl PromptBudget {
    /// Checks the budget; called at start-up so a bad configuration never reaches a user.
    ///
    /// # Errors
    /// A [`BudgetError`] listing every problem.
    pub fn validate(&self) -> Result<(), BudgetError> {
        let mut problems = Vec::new();
        for (name, value) in [
            ("PROMPT_TOTAL_TOKENS", self.total),
            ("PROMPT_PERSONA_TOKENS", self.persona),
            ("PROMPT_SUMMARY_TOKENS", self.summary),
            ("PROMPT_MEMORY_TOKENS", self.memory),
            ("PROMPT_NEW_MESSAGE_TOKENS", self.new_message),
            ("LLM_MAX_TOKENS", self.max_reply_tokens),
            ("LLM_CONTEXT_WINDOW", self.model_window),
        ] {
            if value == 0 {
                problems.push(BudgetProblem::Zero { name });
            }
        }
        if self.facts > self.memory {
            problems.push(BudgetProblem::FactsExceedMemory {
                facts: self.facts,
                memory: self.memory,
            });
        }
        let sum = self.total.saturating_add(self.max_reply_tokens);
        if sum > self.model_window {
            problems.push(BudgetProblem::ExceedsWindow {
                total: self.total,
                max_reply_tokens: self.max_reply_tokens,
                sum,
                model_window: self.model_window,
            });
        }
        // Everything a prompt holds besides its recent turns — the facts too: the core facts
        // sit in the system message and the relevant ones beside the new message, outside the
        // turns' share — plus the overheads of system, new message and at least one turn.
        let fixed = self
            .persona
            .saturating_add(self.summary)
            .saturating_add(self.facts)
            .saturating_add(self.new_message)
            .saturating_add(3 * self.per_message_overhead);
        if fixed >= self.total {
            problems.push(BudgetProblem::PartsExceedTotal {
                persona: self.persona,
                summary: self.summary,
                facts: self.facts,
                new_message: self.new_message,
                total: self.total,
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BudgetError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_the_original_plan_and_is_valid() {
        let b = PromptBudget::default();
        assert_eq!(
            (b.total, b.persona, b.summary, b.memory, b.new_message),
            (2000, 200, 300, 800, 200)
        );
        assert_eq!((b.model_window, b.max_reply_tokens), (4096, 512));
        assert_eq!(b.facts, 200);
        assert_eq!(b.validate(), Ok(()));
    }

    #[test]
    fn facts_larger_than_the_memory_section_are_rejected_and_zero_facts_is_fine() {
        let b = PromptBudget {
            facts: 900,
            ..PromptBudget::default()
        };
        let err = b.validate().unwrap_err();
        assert_eq!(
            err.problems,
            [BudgetProblem::FactsExceedMemory {
                facts: 900,
                memory: 800
            }]
        );
        assert!(err.to_string().contains("PROMPT_FACTS_TOKENS"));
        let none = PromptBudget {
            facts: 0,
            ..PromptBudget::default()
        };
        assert_eq!(none.validate(), Ok(()));
    }

    #[test]
    fn a_prompt_and_reply_larger_than_the_window_are_rejected_with_the_setting_names() {
        let b = PromptBudget {
            total: 3800,
            max_reply_tokens: 512,
            ..PromptBudget::default()
        };
        let err = b.validate().unwrap_err();
        assert_eq!(err.problems.len(), 1);
        let text = err.to_string();
        assert!(
            text.contains("4312 exceeds the model window (4096)"),
            "{text}"
        );
        assert!(text.contains("LLM_MAX_TOKENS"), "{text}");
    }

    #[test]
    fn facts_that_would_push_the_prompt_over_its_total_are_rejected_naming_the_setting() {
        // Each part fits on its own, and facts fit the memory section, but persona, summary,
        // facts and the new message together leave no room in a 1,000-token prompt.
        let b = PromptBudget {
            total: 1000,
            facts: 400,
            ..PromptBudget::default()
        };
        let err = b.validate().unwrap_err();
        assert_eq!(
            err.problems,
            [BudgetProblem::PartsExceedTotal {
                persona: 200,
                summary: 300,
                facts: 400,
                new_message: 200,
                total: 1000
            }]
        );
        assert!(err.to_string().contains("PROMPT_FACTS_TOKENS"), "{err}");
        let without_facts = PromptBudget { facts: 0, ..b };
        assert_eq!(without_facts.validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let b = PromptBudget {
            total: 500,
            memory: 0,
            max_reply_tokens: 4000,
            ..PromptBudget::default()
        };
        let err = b.validate().unwrap_err();
        assert!(err.problems.contains(&BudgetProblem::Zero {
            name: "PROMPT_MEMORY_TOKENS"
        }));
        assert!(err
            .problems
            .iter()
            .any(|p| matches!(p, BudgetProblem::ExceedsWindow { .. })));
        assert!(err
            .problems
            .iter()
            .any(|p| matches!(p, BudgetProblem::PartsExceedTotal { .. })));
    }
}
