//! `voxline subscriber add|remove|list|passwd`.

use std::process::ExitCode;

use clap::Subcommand;
use voxline_auth::{SubscriberStore, parse_address};

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
}

pub fn run(cfg: &NodeConfig, action: Action) -> ExitCode {
    let rt = match crate::runtime(1) {
        Ok(rt) => rt,
        Err(e) => return crate::fail(&e),
    };
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
    };
    store.close().await;
    result
}
