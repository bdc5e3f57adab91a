//! In-process fakes (placeholder, being written).
