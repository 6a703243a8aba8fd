//! trailsql's lake: CloudTrail events converted into a partitioned Parquet lake, locally or in S3, with exactly-once
//! commits, one writer at a time, and the way back to CloudTrail's JSON.
//!
//! It depends on arrow, parquet and object_store, not on a query engine: a converter deployed on its own (a Lambda
//! on each delivery, say) uses this crate alone.
//!
//! - [`schema`]: the one definition of an event's columns, for Arrow, the docs and other engines' DDL.
//! - [`convert`]: a convert run, from sources to a commit.
//! - [`layout`], [`store`], [`manifest`], [`lock`], [`index`], [`digest`], [`format`], [`compact`]: the lake itself.
//! - [`storage`]: local directories and S3, with the AWS credential chain.
//! - [`rebuild`]: rows back to CloudTrail's JSON.

pub mod compact;
pub mod convert;
pub mod digest;
pub mod error;
pub mod format;
pub mod index;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod rebuild;
pub mod schema;
pub mod storage;
pub mod store;
pub mod time;

pub use error::{Error, Result};
pub use store::Lake;
