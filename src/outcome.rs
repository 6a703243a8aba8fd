//! How a command ended, and the one place that turns it into the exit status: 0 ok, 1 found, 2 error.

use std::process::ExitCode;

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything went as asked.
    Success,
    /// The command ran and found something to report: a file that could not be read, rows under
    /// `--fail-on-rows`.
    Found,
}

/// The exit status of a command's result; an error is printed (credentials in URLs redacted) on the way.
pub fn exit_code(result: Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Found) => ExitCode::from(1),
        // `trailsql ... | head` closing the pipe early is a normal end.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let message = e.to_string();
            let message = crate::error::redact_credentials(&message);
            eprintln!("trailsql: {}", crate::print::terminal_safe_lines(&message));
            if let Some(hint) = crate::error::hint(&message) {
                eprintln!("trailsql: {hint}");
            }
            ExitCode::from(2)
        }
    }
}
