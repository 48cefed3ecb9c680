//! Real database servers for tests: a PostgreSQL cluster (`initdb` +
//! `pg_ctl`) and a MariaDB server (`mariadb-install-db` + `mariadbd`), each
//! in its own temporary directory on a free loopback port, stopped on drop.
//! `start()` returns `None` (with a message on stderr) when the binaries are
//! not installed, so tests can skip.
//!
//! Used as a dev-dependency by the crates with SQL stores (voxline-auth,
//! voxline-cdr). Test support code: it panics on setup failures.
#![allow(clippy::unwrap_used)] // test support: a failed setup is a failed test
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The directory holding PostgreSQL's server binaries.
fn postgres_bindir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// A PostgreSQL cluster of our own.
pub struct PgCluster {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    run_as: Option<String>,
    running: bool,
}

/// The password of the `voxline` superuser of a [`PgCluster`].
pub const PG_PASSWORD: &str = "pg-test-pw";

impl PgCluster {
    /// Creates a cluster (`initdb`) and starts it on a free port; `None` if
    /// PostgreSQL is not installed. As root it runs as the `postgres` user.
    pub fn start() -> Option<PgCluster> {
        let Some(bindir) = postgres_bindir() else {
            eprintln!(
                "SKIPPED: PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL refuses to run as root: run it as the `postgres` user.
        let run_as = if is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("running as root needs the postgres system user");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
            Some("postgres".to_string())
        } else {
            None
        };
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        if let Some(user) = &run_as {
            let user = nix::unistd::User::from_name(user).unwrap().unwrap();
            nix::unistd::chown(&pwfile, Some(user.uid), Some(user.gid)).unwrap();
        }
        let mut cluster = PgCluster {
            port: 0,
            dir,
            bindir,
            run_as,
            running: false,
        };
        let data = cluster.data_dir();
        run(cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "voxline", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display())))
        .unwrap();
        // The port may be taken between probing and binding: retry.
        let mut last_error = String::new();
        for _ in 0..3 {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.running = true;
                    return Some(cluster);
                }
                Err(e) => last_error = e,
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        // -w: returns once the server accepts connections.
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]))
    }

    /// `postgres://voxline:…@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://voxline:{PG_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Stops the server now (an outage).
    pub fn stop(&mut self) {
        if self.running {
            let _ = run(self.command("pg_ctl").arg("-D").arg(self.data_dir()).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]));
            self.running = false;
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.pg_ctl_start().unwrap();
        self.running = true;
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it is running (not [`PgCluster::stop`]ped).
    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A MariaDB server of our own.
pub struct MariaDb {
    dir: TempDir,
    child: Child,
    port: u16,
}

/// The password of the `voxline` user of a [`MariaDb`].
pub const MYSQL_PASSWORD: &str = "my-test-pw";

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&paths).collect();
    dirs.extend(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    candidates
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
}

impl MariaDb {
    /// Creates a data directory and starts `mariadbd` on a free port with a
    /// `voxline` database and user; `None` if MariaDB is not installed.
    pub fn start() -> Option<MariaDb> {
        let (Some(install), Some(server)) = (
            find_program(&["mariadb-install-db", "mysql_install_db"]),
            find_program(&["mariadbd", "mysqld"]),
        ) else {
            eprintln!("SKIPPED: MariaDB server binaries not found; apt-get install mariadb-server");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let user = if is_root() {
            "root".to_string()
        } else {
            whoami()
        };
        run(Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--user={user}")))
        .unwrap();
        for _ in 0..3 {
            let port = free_port();
            if let Some(server) = MariaDb::launch(&server, dir.path(), &data, &user, port) {
                let db = MariaDb {
                    dir,
                    child: server,
                    port,
                };
                db.provision();
                return Some(db);
            }
        }
        panic!("MariaDB did not start");
    }

    /// Starts `mariadbd` and waits for "ready for connections" on its log.
    fn launch(server: &Path, dir: &Path, data: &Path, user: &str, port: u16) -> Option<Child> {
        let mut child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--port={port}"))
            .arg(format!("--user={user}"))
            .args([
                "--bind-address=127.0.0.1",
                "--innodb-buffer-pool-size=16M",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.push_str(&line);
                log.push('\n');
                if line.contains("ready for connections") {
                    let _ = tx.send(Ok(()));
                }
            }
            // Closed without becoming ready (the loop above drains the pipe
            // for the server's whole life).
            let _ = tx.send(Err(log));
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Some(child),
            Ok(Err(log)) => {
                eprintln!("mariadbd exited:\n{log}");
                let _ = child.wait();
                None
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// Creates the database and a password user reachable over TCP.
    fn provision(&self) {
        let client = find_program(&["mariadb", "mysql"]).expect("mariadb client");
        run(Command::new(client)
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .args(["-u", "root", "-e"])
            .arg(format!(
                "CREATE DATABASE voxline; \
                 CREATE USER 'voxline'@'127.0.0.1' IDENTIFIED BY '{MYSQL_PASSWORD}'; \
                 GRANT ALL ON voxline.* TO 'voxline'@'127.0.0.1';"
            )))
        .unwrap();
    }

    /// `mysql://voxline:…@127.0.0.1:port/voxline`.
    pub fn url(&self) -> String {
        format!(
            "mysql://voxline:{MYSQL_PASSWORD}@127.0.0.1:{}/voxline",
            self.port
        )
    }
}

fn whoami() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "nobody".into())
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
