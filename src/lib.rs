//! trailsql: a SQL engine over AWS CloudTrail logs, on Apache DataFusion.

pub mod app;
#[cfg(feature = "ballista")]
pub mod ballista;
pub mod cli;
pub mod convert;
pub mod corpus;
pub mod ddl;
pub mod embedded;
pub mod error;
pub mod exec;
pub mod lake;
pub mod lazy_views;
pub mod print;
pub mod queries;
pub mod rebuild;
pub mod repl;
pub mod schema;
pub mod session;
pub mod sqltext;
pub mod storage;
