//! The landing-zone destination, shared by the file formats: one type, parameterised by the
//! format, so the builder and the staging protocol are written once.

use std::marker::PhantomData;
use std::path::Path;

use cdp_core::{Batch, Destination, OpenContext, Result, StreamSpec, WriteOutcome, async_trait};

use super::Blocking;
use super::landing::Landing;

/// A file format a [`LandingDestination`] writes; implemented by [`Jsonl`] and [`Parquet`].
pub trait LandingFormat: std::fmt::Debug + Send + Sync + 'static + sealed::Sealed {
    /// Connector name, also the default instance name.
    const CONNECTOR: &'static str;
}

mod sealed {
    pub trait Sealed {}
    #[cfg(feature = "jsonl")]
    impl Sealed for super::Jsonl {}
    #[cfg(feature = "parquet")]
    impl Sealed for super::Parquet {}
}

/// Newline-delimited JSON files; see [`JsonlDestination`](super::JsonlDestination).
#[cfg(feature = "jsonl")]
#[derive(Debug, Clone, Copy)]
pub struct Jsonl;

#[cfg(feature = "jsonl")]
impl LandingFormat for Jsonl {
    const CONNECTOR: &'static str = "jsonl";
}

/// Parquet files; see [`ParquetDestination`](super::ParquetDestination).
#[cfg(feature = "parquet")]
#[derive(Debug, Clone, Copy)]
pub struct Parquet;

#[cfg(feature = "parquet")]
impl LandingFormat for Parquet {
    const CONNECTOR: &'static str = "parquet";
}

/// Writes every stream as files of format `F` in a landing zone, staged per pipeline and
/// epoch and published on commit (see the [module docs](super)). Use it through
/// [`JsonlDestination`](super::JsonlDestination) or
/// [`ParquetDestination`](super::ParquetDestination).
#[derive(Debug)]
pub struct LandingDestination<F: LandingFormat> {
    name: String,
    pub(crate) inner: Blocking,
    format: PhantomData<F>,
}

impl<F: LandingFormat> LandingDestination<F> {
    pub(crate) fn from_landing(landing: Landing) -> Self {
        LandingDestination {
            name: F::CONNECTOR.into(),
            inner: Blocking::new(F::CONNECTOR, landing),
            format: PhantomData,
        }
    }

    /// Sets the instance name. Default: the format's name (`jsonl`, `parquet`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Partitions rows by the day (UTC) of this timestamp or date column instead of the sync
    /// day; rows where it is null go to the sync day.
    pub fn with_partition_column(mut self, column: impl Into<String>) -> Self {
        if let Ok(landing) = self.inner.landing_mut() {
            landing.set_partition_column(Some(column.into()));
        }
        self
    }

    /// Starts a new file once one reaches about `bytes` (Parquet estimates it while a row
    /// group is buffered). Default 256 MiB.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        if let Ok(landing) = self.inner.landing_mut() {
            landing.set_max_file_bytes(bytes);
        }
        self
    }

    /// The landing zone's root directory.
    pub fn root(&self) -> &Path {
        self.inner.root()
    }
}

#[async_trait]
impl<F: LandingFormat> Destination for LandingDestination<F> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&mut self) -> Result<()> {
        let root = self.inner.root().to_path_buf();
        tokio::task::spawn_blocking(move || super::landing::check_root(&root))
            .await
            .map_err(|e| cdp_core::Error::external(F::CONNECTOR, e))?
    }

    async fn open(&mut self, ctx: &OpenContext) -> Result<()> {
        let ctx = ctx.clone();
        self.inner.run(move |landing| landing.open(&ctx)).await
    }

    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        let stream = stream.clone();
        self.inner
            .run(move |landing| landing.prepare(&stream))
            .await
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        let batch = batch.clone();
        let rejected = self.inner.run(move |landing| landing.write(&batch)).await?;
        Ok(WriteOutcome { rejected })
    }

    async fn flush(&mut self, epoch: u64) -> Result<()> {
        self.inner.run(move |landing| landing.flush(epoch)).await
    }

    async fn commit(&mut self, epoch: u64) -> Result<()> {
        self.inner.run(move |landing| landing.publish(epoch)).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.run(Landing::close).await
    }
}
