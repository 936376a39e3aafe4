use strata_store::Classify;

/// What a command failed with: the text docker would print and how to exit.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    /// Whether docker would print it as a daemon error (`Error response from daemon: `).
    pub from_engine: bool,
    /// Exit code override (`run` uses 125/126/127; most commands exit 1).
    pub code: Option<u8>,
    /// Printed before the message (`strata: ` for run/create, as docker prints `docker: `).
    pub prefix: Option<String>,
}

impl CliError {
    /// A client-side error (bad arguments noticed before the engine runs).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), from_engine: false, code: None, prefix: None }
    }

    /// Marks a front-end-detected error as one docker reports from the daemon.
    pub fn engine(mut self) -> CliError {
        self.from_engine = true;
        self
    }

    pub fn print(&self) {
        let prefix = self.prefix.as_deref().unwrap_or("");
        if self.from_engine {
            eprintln!("{prefix}Error response from daemon: {}", self.message);
        } else {
            eprintln!("{prefix}{}", self.message);
        }
        if !prefix.is_empty() {
            eprintln!("\nRun 'strata run --help' for more information");
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.code.unwrap_or(1)
    }
}

/// Every module error converts; the kind matters only where an exit code depends on it
/// (`run`, which classifies before converting).
impl<E: Classify + std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError { message: e.to_string(), from_engine: true, code: None, prefix: None }
    }
}
