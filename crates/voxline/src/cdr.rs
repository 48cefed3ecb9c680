//! `voxline cdr export --since <time> [--until <time>] --format csv|json`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use voxline_cdr::{CdrError, CdrStore, ExportFormat, TimeRange, Timestamp};

use crate::config::NodeConfig;

/// What to do with call detail records.
#[derive(Subcommand)]
pub enum Action {
    /// Write the records of calls that started in [--since, --until) to
    /// stdout, oldest first.
    Export {
        /// First start time included: RFC 3339 (2026-11-21T14:00:00Z,
        /// 2026-11-21T15:00:00+01:00) or a date (2026-11-21, midnight UTC).
        #[arg(long)]
        since: Timestamp,
        /// First start time excluded (same forms); default: no end.
        #[arg(long)]
        until: Option<Timestamp>,
        /// `csv` (RFC 4180 with a header row) or `json` (JSON lines).
        #[arg(long)]
        format: ExportFormat,
    },
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("--until ({until}) must be after --since ({since})")]
    EmptyRange { since: Timestamp, until: Timestamp },
    #[error(transparent)]
    Cdr(#[from] CdrError),
}

pub fn run(cfg: &NodeConfig, action: Action) -> ExitCode {
    let rt = match crate::runtime(1) {
        Ok(rt) => rt,
        Err(e) => return crate::fail(&e),
    };
    match rt.block_on(execute(cfg, action)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&chain(&e)),
    }
}

/// `error: cause: cause`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn execute(cfg: &NodeConfig, action: Action) -> Result<(), CliError> {
    let Action::Export {
        since,
        until,
        format,
    } = action;
    if let Some(until) = until
        && until <= since
    {
        return Err(CliError::EmptyRange { since, until });
    }
    let store = CdrStore::from_config(&cfg.cdr, &cfg.node.data_dir).await?;
    let stdout = std::io::stdout().lock();
    let out = std::io::BufWriter::with_capacity(64 * 1024, stdout);
    let result = voxline_cdr::export(&store, TimeRange::new(since, until), format, out).await;
    store.close().await;
    match result {
        Ok(count) => eprintln!("exported {count} call detail records"),
        // `voxline cdr export ... | head`: the reader has seen enough.
        Err(CdrError::Export(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e.into()),
    }
    let spool = cfg.cdr.spool_file(&cfg.node.data_dir);
    if let Ok(text) = std::fs::read(&spool) {
        let waiting = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        if waiting > 0 {
            let _ = writeln!(
                std::io::stderr(),
                "note: {waiting} records wait in {} for the database and are not in this export",
                spool.display()
            );
        }
    }
    Ok(())
}
