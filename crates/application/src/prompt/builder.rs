//! `PersonalizationService`: turns a profile, a memory slice and a new message into chat
//! messages that fit the token budget.
//!
//! Shape: one system message (persona section + summary section), the recent events as
//! user/assistant turns, then the new message. When over budget: the oldest turns are dropped
//! until only `min_recent_events` remain, then the remaining turns are trimmed (longest first);
//! an over-long new message is cut with a marker, never dropped.
//!
//! Laid out for prompt caches (the embedded engine's slots, llama.cpp server, vLLM, Ollama):
//! the system part changes only with the profile or the summary, and old turns leave the
//! prompt in blocks of [`WINDOW_BLOCK`] events, not one turn per message, so most turns' prompt
//! is the previous prompt plus the previous reply and the new message — a pure append. The
//! reply use case aligns the window the same way (see [`window_start`]).

use std::sync::Arc;

use butler_domain::ports::TokenCounter;
use butler_domain::{
    ChatMessage, MemorySlice, PersonalizedPrompt, Role, UserMemoryEvent, UserProfile,
};

use super::budget::{BudgetError, PromptBudget};

/// Old turns leave the prompt this many events (six turns) at a time. Even, so a window
/// always starts with a user's message.
pub const WINDOW_BLOCK: usize = 12;

/// Where the window of recent events starts among `loaded` events (the newest of the user's
/// `total` stored events): at least `limit` events are kept when there are that many, and
/// the start moves only every [`WINDOW_BLOCK`] events, so it stays put for six turns at a time.
#[must_use]
pub fn window_start(loaded: usize, total: u64, limit: usize) -> usize {
    let total = usize::try_from(total).unwrap_or(usize::MAX).max(loaded);
    if loaded <= limit || total <= limit {
        return 0;
    }
    let keep = limit + (total - limit) % WINDOW_BLOCK;
    loaded.saturating_sub(keep)
}
use super::templates::{self, CUT_MARKER};
use super::trim::trim_to_tokens;

/// Builds personalised prompts within a [`PromptBudget`].
#[derive(Clone)]
pub struct PersonalizationService {
    counter: Arc<dyn TokenCounter>,
    budget: PromptBudget,
}

impl std::fmt::Debug for PersonalizationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalizationService")
            .field("counter", &self.counter.name())
            .field("budget", &self.budget)
            .finish()
    }
}

impl PersonalizationService {
    /// A service counting with `counter`.
    ///
    /// # Errors
    /// If the budget is invalid (checked here so a bad configuration fails at start-up).
    pub fn new(counter: Arc<dyn TokenCounter>, budget: PromptBudget) -> Result<Self, BudgetError> {
        budget.validate()?;
        Ok(Self { counter, budget })
    }

    /// The budget in force.
    #[must_use]
    pub fn budget(&self) -> &PromptBudget {
        &self.budget
    }

    /// The token counter in use.
    #[must_use]
    pub fn counter(&self) -> &Arc<dyn TokenCounter> {
        &self.counter
    }

    /// The persona section for a profile, within the persona budget: topics are dropped first,
    /// then the persona text is shortened; the fixed instructions are never cut.
    pub async fn persona_section(&self, profile: &UserProfile) -> String {
        let limit = self.budget.persona;
        let full = templates::persona_section(
            profile.language,
            profile.tone,
            &profile.persona,
            &profile.preferred_topics,
        );
        if self.counter.count(&full).await <= limit {
            return full;
        }
        let without_topics =
            templates::persona_section(profile.language, profile.tone, &profile.persona, &[]);
        let fixed = self
            .counter
            .count(&templates::persona_section(
                profile.language,
                profile.tone,
                "",
                &[],
            ))
            .await;
        if self.counter.count(&without_topics).await <= limit || fixed >= limit {
            return without_topics;
        }
        // The persona gets what the instructions leave; a little slack for token merges at the seams.
        let persona = trim_to_tokens(&*self.counter, &profile.persona, limit - fixed, "…").await;
        let section = templates::persona_section(profile.language, profile.tone, &persona, &[]);
        if self.counter.count(&section).await <= limit {
            section
        } else {
            let persona = trim_to_tokens(
                &*self.counter,
                &persona,
                (limit - fixed).saturating_sub(4),
                "…",
            )
            .await;
            templates::persona_section(profile.language, profile.tone, &persona, &[])
        }
    }

    /// Builds the prompt for `new_message` from the profile and memory.
    ///
    /// Remembered facts share the memory budget, at most [`PromptBudget::facts`] of it: the
    /// core facts (at most half of that) join the system message, which they leave unchanged
    /// from turn to turn; the facts relevant to the message fill the rest, in a fenced note
    /// before the new message, so they never disturb the cached start of the prompt.
    pub async fn build(
        &self,
        profile: &UserProfile,
        memory: &MemorySlice,
        new_message: &str,
    ) -> PersonalizedPrompt {
        let b = &self.budget;
        let mut system = self.persona_section(profile).await;
        if let Some(summary) = memory
            .summary
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let summary = trim_to_tokens(&*self.counter, summary, b.summary, CUT_MARKER).await;
            system.push_str("\n\n");
            system.push_str(&templates::summary_section(profile.language, &summary));
        }
        let (mut facts_used, mut facts_count) = (0, 0);
        let core = self
            .fit_facts(&memory.core_facts, b.facts / 2, |facts| {
                templates::core_facts_section(profile.language, facts)
            })
            .await;
        let mut shown: Vec<uuid::Uuid> = Vec::new();
        if let Some((section, tokens, count)) = core {
            system.push_str("\n\n");
            system.push_str(&section);
            facts_used += tokens;
            facts_count += count;
            shown.extend(memory.core_facts[..count].iter().map(|f| f.id));
        }
        let relevant_facts: Vec<butler_domain::MemoryFact> = memory
            .relevant_facts
            .iter()
            .filter(|f| !shown.contains(&f.id))
            .cloned()
            .collect();
        let mut new_message = self.cut_new_message(new_message).await;
        let bare_tokens = self.counter.count(&new_message).await;
        let message = new_message.clone();
        let relevant = self
            .fit_facts(
                &relevant_facts,
                b.facts.saturating_sub(facts_used) + bare_tokens,
                |facts| templates::relevant_facts_note(profile.language, facts, &message),
            )
            .await;
        if let Some((note, tokens, count)) = relevant {
            new_message = note;
            facts_used += tokens.saturating_sub(bare_tokens);
            facts_count += count;
        }
        let system_tokens = self.counter.count(&system).await;
        let new_tokens = self.counter.count(&new_message).await;
        let fixed = system_tokens + new_tokens + 2 * b.per_message_overhead;
        let memory_allowance = b
            .memory
            .saturating_sub(facts_used)
            .min(b.total.saturating_sub(fixed));
        // Where the first loaded event sits among all the user's stored events.
        let first = usize::try_from(memory.total_events)
            .unwrap_or(usize::MAX)
            .saturating_sub(memory.events.len());
        let (turns, turn_tokens) = self
            .fit_turns(&memory.events, first, memory_allowance)
            .await;
        let mut prompt = self.assemble(system, turns, new_message, fixed + turn_tokens);
        prompt.facts_used = facts_count;
        prompt
    }

    /// The longest prefix of `facts` whose rendering (by `render`) fits `limit` tokens: the
    /// rendering, its tokens and how many facts it holds; `None` when not even one fits.
    async fn fit_facts(
        &self,
        facts: &[butler_domain::MemoryFact],
        limit: usize,
        render: impl Fn(&[&str]) -> String,
    ) -> Option<(String, usize, usize)> {
        let mut best = None;
        let mut texts: Vec<&str> = Vec::with_capacity(facts.len());
        for fact in facts {
            texts.push(&fact.text);
            let rendered = render(&texts);
            let tokens = self.counter.count(&rendered).await;
            if tokens > limit {
                break;
            }
            best = Some((rendered, tokens, texts.len()));
        }
        best
    }

    /// A prompt with no persona and no memory (`PERSONALIZATION_ENABLED=false`).
    pub async fn build_stateless(&self, new_message: &str) -> PersonalizedPrompt {
        let system = templates::STATELESS_SYSTEM.to_owned();
        let new_message = self.cut_new_message(new_message).await;
        let tokens = self.counter.count(&system).await
            + self.counter.count(&new_message).await
            + 2 * self.budget.per_message_overhead;
        self.assemble(system, Vec::new(), new_message, tokens)
    }

    async fn cut_new_message(&self, text: &str) -> String {
        trim_to_tokens(
            &*self.counter,
            text.trim(),
            self.budget.new_message,
            CUT_MARKER,
        )
        .await
    }

    #[allow(clippy::unused_self)]
    fn assemble(
        &self,
        system: String,
        turns: Vec<ChatMessage>,
        new_message: String,
        token_count: usize,
    ) -> PersonalizedPrompt {
        let mut prompt = PersonalizedPrompt {
            facts_used: 0,
            system,
            turns,
            new_message,
            full_prompt: String::new(),
            token_count,
        };
        prompt.full_prompt = PersonalizedPrompt::render(&prompt.to_messages());
        prompt
    }

    /// Chooses and trims turns to fit `allowance` tokens (overhead included). Returns the turns
    /// and the tokens they use.
    async fn fit_turns(
        &self,
        events: &[UserMemoryEvent],
        first: usize,
        allowance: usize,
    ) -> (Vec<ChatMessage>, usize) {
        let overhead = self.budget.per_message_overhead;
        let mut items: Vec<(Role, String, usize)> = Vec::with_capacity(events.len());
        for e in events {
            let content = e.content.trim().to_owned();
            let tokens = self.counter.count(&content).await;
            items.push((e.role, content, tokens));
        }
        let cost = |items: &[(Role, String, usize)]| {
            items.iter().map(|(_, _, t)| t + overhead).sum::<usize>()
        };

        // 1. Drop the oldest turns while over budget and more than the minimum remain. The
        //    new start is moved on to the next block boundary (counted over all the user's
        //    events, so it is the same boundary next turn): the prompt's start then stays put
        //    while the conversation grows by a block. Only when a block would leave fewer than
        //    the minimum are whole turns dropped one by one.
        let min = self.budget.min_recent_events;
        let mut needed = 0;
        while cost(&items[needed..]) > allowance && items.len() - needed > min {
            needed += 1;
        }
        let mut start = needed;
        if needed > 0 {
            // The coarsest grid whose next boundary always leaves the minimum, judged by how
            // many events fit (which changes slowly): a block, half a block, or a whole turn.
            let fits = items.len() - needed;
            let grid = [WINDOW_BLOCK, WINDOW_BLOCK / 2, 2]
                .into_iter()
                .find(|grid| fits >= min + grid - 1)
                .unwrap_or(1);
            start = (first + needed).div_ceil(grid) * grid - first;
        }
        let mut items = items.split_off(start);

        // 2. Still over: cap every turn at the largest size that fits (water-filling), trimming
        //    only the turns above the cap. If even the overheads do not fit, drop oldest turns.
        while !items.is_empty() && items.len() * overhead >= allowance {
            items.remove(0);
        }
        if cost(&items) > allowance {
            let content_room = allowance - items.len() * overhead;
            let cap = water_level(items.iter().map(|(_, _, t)| *t), content_room);
            for (_, content, tokens) in &mut items {
                if *tokens > cap {
                    *content = trim_to_tokens(&*self.counter, content, cap, CUT_MARKER).await;
                    *tokens = self.counter.count(content).await;
                }
            }
        }

        let used = cost(&items);
        let turns = items
            .into_iter()
            .map(|(role, content, _)| match role {
                Role::User => ChatMessage::user(content),
                Role::Assistant => ChatMessage::assistant(content),
            })
            .collect();
        (turns, used)
    }
}

/// The largest per-item cap `c` such that `sum(min(size, c)) <= room`.
fn water_level(sizes: impl Iterator<Item = usize>, room: usize) -> usize {
    let mut sizes: Vec<usize> = sizes.collect();
    sizes.sort_unstable();
    let mut remaining = room;
    let mut left = sizes.len();
    for size in sizes {
        let fair = remaining / left;
        if size > fair {
            return fair;
        }
        remaining -= size;
        left -= 1;
    }
    usize::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_start_moves_in_blocks_and_keeps_at_least_the_limit() {
        // Fewer than the limit: everything.
        assert_eq!(window_start(10, 10, 20), 0);
        // 31 loaded of 100–126 stored: the start moves only when the total crosses a block.
        let kept: Vec<usize> = (100..=126)
            .step_by(2)
            .map(|total| 31 - window_start(31, total, 20))
            .collect();
        assert!(
            kept.iter().all(|k| (20..20 + WINDOW_BLOCK).contains(k)),
            "{kept:?}"
        );
        let moves = kept.windows(2).filter(|w| w[1] < w[0]).count();
        assert_eq!(moves, 2, "two block moves over 14 turns: {kept:?}");
    }

    #[test]
    fn water_level_caps_only_the_largest_items() {
        assert_eq!(water_level([10, 10, 100].into_iter(), 60), 40);
        assert_eq!(water_level([10, 10].into_iter(), 60), usize::MAX);
        assert_eq!(water_level([50, 50, 50].into_iter(), 90), 30);
        assert_eq!(water_level(std::iter::empty(), 0), usize::MAX);
    }
}
