//! Object storage for burst jobs, over the `object_store` crate.
//!
//! - [`Storage::open`] takes `file:///dir` (or a plain path: the embedded
//!   default) or `s3://bucket/prefix` (any S3-compatible service; endpoint,
//!   region and credentials from [`StorageOptions`] or the usual `AWS_*`
//!   environment variables).
//! - Reads: whole objects, byte ranges, sizes, listings. Writes commit
//!   atomically: [`Storage::put`] and a [`Writer`] (multipart, for large
//!   outputs) make the object appear whole when they finish, never half-written.
//! - [`cooperative_get`]: the workers of a pack fetch one object once, each a
//!   byte range, and share the pieces in memory without copying.
//! - Every handle counts the bytes it pulled from storage.
//! - [`overlap`] tells whether one location lies in another (a job's output in its input).

mod cooperative;
mod error;
mod location;
mod store;

pub use cooperative::{Chunks, cooperative_get};
pub use error::{Error, Result, SANDBOXED_ENV};
pub use location::{Overlap, overlap};
pub use store::{Storage, StorageOptions, WriteNotice, Writer, remove_staging_files};
