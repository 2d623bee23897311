//! Helpers for tests that need a real Docker engine.
