//! Use cases of Personalised Butler.
