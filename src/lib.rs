//! trailsql: a SQL engine over AWS CloudTrail logs, on Apache DataFusion.

pub mod allocator;
pub mod cli;
pub mod commands;
pub mod ddl;
pub mod embedded;
pub mod error;
pub mod exec;
pub mod outcome;
pub mod print;
pub mod queries;
pub mod repl;
pub mod session;
pub mod sigma;
pub mod sqltext;
pub mod textfile;
