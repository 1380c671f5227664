//! Adapters for the ports of `butler-domain`.
