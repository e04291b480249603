//! Checks on what may flow where, run before any data moves and again whenever a stream's
//! schema changes: the hook governance policies and contracts plug into.

use arrow::datatypes::SchemaRef;

use crate::error::Result;

/// One stream on its way to one destination, as the destination will receive it: after
/// the pipeline's transforms, identity resolution, stamping and the destination's own
/// transforms.
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    /// The pipeline.
    pub pipeline_id: &'a str,
    /// The stream.
    pub stream: &'a str,
    /// The destination's name.
    pub destination: &'a str,
    /// The schema the destination will receive (user columns plus `_cdp_` columns).
    pub schema: &'a SchemaRef,
}

/// Decides whether a [`Flow`] is allowed.
///
/// Return [`Error::Policy`](crate::Error::Policy) naming the field, its class or rule, and
/// the destination. The runtime calls checks when a run starts (for every stream the source
/// discovers) and again whenever a stream's schema changes mid-run; a refusal stops the run
/// before the offending batch reaches the destination.
///
/// # Example
///
/// ```
/// use cdp_core::{Error, Flow, FlowCheck, Result};
///
/// /// No column named `ssn` may leave the pipeline.
/// #[derive(Debug)]
/// struct NoSsn;
///
/// impl FlowCheck for NoSsn {
///     fn check(&self, flow: &Flow<'_>) -> Result<()> {
///         match flow.schema.column_with_name("ssn") {
///             Some(_) => Err(Error::Policy {
///                 stream: flow.stream.to_string(),
///                 destination: flow.destination.to_string(),
///                 message: "field `ssn` is restricted".into(),
///             }),
///             None => Ok(()),
///         }
///     }
/// }
/// ```
pub trait FlowCheck: std::fmt::Debug + Send + Sync {
    /// Allows the flow, or refuses it with an error naming what is wrong.
    fn check(&self, flow: &Flow<'_>) -> Result<()>;
}
