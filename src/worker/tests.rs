//! Worker tests that need paused time or a store double: the at-most-one deadline, assignment
//! batches and their budget, and the backoff reset.
