//! `voxline subscriber add|remove|list|passwd`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use voxline_auth::{NewSubscriber, SubscriberStore, parse_address};

use crate::config::NodeConfig;

/// What to do with subscribers.
#[derive(Subcommand)]
pub enum Action {
    /// Add a subscriber: `voxline subscriber add alice@localhost --password secret`.
    Add {
        /// `user@domain`.
        address: String,
        /// The SIP password (only its HA1 hashes are stored).
        #[arg(long)]
        password: String,
    },
    /// Remove a subscriber.
    Remove {
        /// `user@domain`.
        address: String,
    },
    /// List subscribers (of one domain, or all).
    List {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Change a subscriber's password.
    Passwd {
        /// `user@domain`.
        address: String,
        /// The new password.
        #[arg(long)]
        password: String,
    },
    /// Provision subscribers in bulk from a file of `user@domain,password`
    /// lines (the password is everything after the first comma; blank
    /// lines and lines starting with `#` are skipped). Existing
    /// subscribers get the new password. The whole file is checked first:
    /// with any bad line nothing is imported.
    Import {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Subscribers written per database transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
}

pub fn run(cfg: &NodeConfig, action: Action) -> ExitCode {
    let rt = match crate::runtime(1) {
        Ok(rt) => rt,
        Err(e) => return crate::fail(&e),
    };
    if let Action::Import { file, batch } = &action {
        return match rt.block_on(import(cfg, file, *batch)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => crate::fail(&e),
        };
    }
    match rt.block_on(execute(cfg, action)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&e),
    }
}

async fn execute(cfg: &NodeConfig, action: Action) -> Result<(), voxline_auth::AuthError> {
    let store = SubscriberStore::from_config(&cfg.auth, &cfg.node.data_dir).await?;
    let result = match action {
        Action::Add { address, password } => {
            let (user, domain) = parse_address(&address)?;
            store
                .add(user, domain, &password)
                .await
                .map(|()| println!("added {user}@{domain}"))
        }
        Action::Remove { address } => {
            let (user, domain) = parse_address(&address)?;
            store
                .remove(user, domain)
                .await
                .map(|()| println!("removed {user}@{domain}"))
        }
        Action::Passwd { address, password } => {
            let (user, domain) = parse_address(&address)?;
            store
                .set_password(user, domain, &password)
                .await
                .map(|()| println!("password changed for {user}@{domain}"))
        }
        Action::List { domain } => store.list(domain.as_deref()).await.map(|subs| {
            for s in subs {
                println!("{}@{}", s.username, s.domain);
            }
        }),
        // Dispatched by `run` (the file is checked before the store opens).
        Action::Import { .. } => Ok(()),
    };
    store.close().await;
    result
}

/// Why an import file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Lines that are not `user@domain,password`.
    #[error("{}", .0.join("\n"))]
    BadLines(Vec<String>),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] voxline_auth::AuthError),
}

/// One `user@domain,password` line of an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine<'a> {
    /// 1-based line number.
    pub line: usize,
    /// The user part.
    pub username: &'a str,
    /// The domain.
    pub domain: &'a str,
    /// The password.
    pub password: &'a str,
}

/// Reads an import file's text: every entry, or every problem (each named
/// with its line number).
pub fn parse_import(text: &str) -> Result<Vec<ImportLine<'_>>, Vec<String>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let Some((address, password)) = l.split_once(',') else {
            problems.push(format!("line {line}: expected user@domain,password"));
            continue;
        };
        match parse_address(address.trim()) {
            Ok(_) if password.is_empty() => {
                problems.push(format!("line {line}: empty password"));
            }
            Ok((username, domain)) => entries.push(ImportLine {
                line,
                username,
                domain,
                password,
            }),
            Err(_) => problems.push(format!(
                "line {line}: {:?} is not user@domain",
                address.trim()
            )),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

async fn import(cfg: &NodeConfig, file: &Path, batch: usize) -> Result<(), ImportError> {
    let read = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    let text = read.map_err(|source| ImportError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let entries = parse_import(&text).map_err(ImportError::BadLines)?;
    let store = SubscriberStore::from_config(&cfg.auth, &cfg.node.data_dir).await?;
    let started = std::time::Instant::now();
    let mut total = voxline_auth::Imported::default();
    let mut result = Ok(());
    for chunk in entries.chunks(batch.max(1)) {
        let batch: Vec<NewSubscriber<'_>> = chunk
            .iter()
            .map(|e| NewSubscriber {
                username: e.username,
                domain: e.domain,
                password: e.password,
            })
            .collect();
        match store.import(&batch).await {
            Ok(done) => {
                total.added += done.added;
                total.updated += done.updated;
            }
            Err(e) => {
                let first = chunk.first().map_or(0, |e| e.line);
                eprintln!("batch starting at line {first} not imported");
                result = Err(ImportError::Store(e));
                break;
            }
        }
    }
    store.close().await;
    println!(
        "imported {} subscribers ({} added, {} updated) in {:.1} s",
        total.added + total.updated,
        total.added,
        total.updated,
        started.elapsed().as_secs_f64()
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines() {
        let text = "# bench users\r\nu1@localhost,secret\r\n\n  \nbob@Example.COM,pa,ss,word\n";
        let got = parse_import(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            ImportLine {
                line: 5,
                username: "bob",
                domain: "Example.COM",
                password: "pa,ss,word"
            }
        );
        assert_eq!(got[0].password, "secret");
        let problems = parse_import("a@b,x\nno-comma\n@b,x\nc@d,\n").unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 2:"), "{problems:?}");
        assert!(problems[1].starts_with("line 3:"), "{problems:?}");
        assert!(
            problems[2].starts_with("line 4: empty password"),
            "{problems:?}"
        );
    }
}
