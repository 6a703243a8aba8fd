//! The SQL carried in the binary: views (src/views/*.sql) and saved queries (queries/*.sql), as build.rs found them.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
