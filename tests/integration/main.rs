//! Integration tests of trailsql: the binary's contract and the library end to end.

#[cfg(feature = "ballista")]
mod ballista;
mod build;
mod common;
mod convert;
mod crash;
mod ddl;
mod digest;
mod docs;
mod engines;
mod faults;
mod listing;
mod realdata;
mod repl;
mod run;
mod s3;
mod sigma;
