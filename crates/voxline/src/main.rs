//! `voxline`: the command-line entry point. Subcommands are thin: they load
//! the configuration and call into the crates that do the work.

mod allocator;
mod api;
mod call_hooks;
mod cdr;
mod config;
mod ctl;
mod node;
mod subscriber;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{LoadError, NodeConfig};

/// Carrier-grade SIP edge, registrar, proxy and media relay.
#[derive(Parser)]
#[command(name = "voxline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node (the embedded all-in-one default without --config).
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print every problem.
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Provision subscribers (in the database the node uses).
    Subscriber {
        /// Configuration file (default: the embedded default).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: subscriber::Action,
    },
    /// Call detail records (in the database the node writes them to).
    Cdr {
        /// Configuration file (default: the embedded default).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: cdr::Action,
    },
    /// Talk to a running node's admin API.
    Ctl {
        /// Admin address of the node.
        #[arg(long, default_value = "127.0.0.1:8080", global = true)]
        admin: SocketAddr,
        #[command(subcommand)]
        action: ctl::Action,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => match load(config.as_deref()) {
            Ok(cfg) => node::run(cfg),
            Err(e) => fail(&e),
        },
        Command::Check { config } => match NodeConfig::load_file(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Subscriber { config, action } => match load(config.as_deref()) {
            Ok(cfg) => subscriber::run(&cfg, action),
            Err(e) => fail(&e),
        },
        Command::Cdr { config, action } => match load(config.as_deref()) {
            Ok(cfg) => cdr::run(&cfg, action),
            Err(e) => fail(&e),
        },
        Command::Ctl { admin, action } => ctl::run(admin, action),
    }
}

fn load(path: Option<&std::path::Path>) -> Result<NodeConfig, LoadError> {
    match path {
        Some(p) => NodeConfig::load_file(p),
        None => NodeConfig::embedded_default().map_err(LoadError::Invalid),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::FAILURE
}

/// A multi-thread runtime with the configured worker count.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    b.enable_all().thread_name("voxline").build()
}
