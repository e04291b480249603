//! Built-in transforms.
//!
//! - [`Normalize`]: maps nested source fields to flat, typed, cleaned-up columns (the
//!   normalisation layer); rows whose values cannot be converted become dead letters.

pub mod normalize;

pub use normalize::{CastType, FieldRule, Normaliser, Normalize, NormalizeConfig};
