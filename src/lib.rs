//! Poseidon.
