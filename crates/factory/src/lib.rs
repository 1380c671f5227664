//! Settings and wiring of adapters into use cases.
