//! Database URLs: the default SQLite file, and redaction for logs and
//! error messages.

use std::path::Path;

/// The SQLite file in a node's data directory when no URL is configured
/// (one file for every store: each crate has its own tables).
pub const DEFAULT_SQLITE_FILE: &str = "voxline.db";

/// The URL of the SQLite database in the file `path`.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The configured URL, or the default SQLite file in `data_dir`.
pub fn database_url(configured: Option<&str>, data_dir: &Path) -> String {
    match configured {
        Some(url) => url.to_string(),
        None => sqlite_url(&data_dir.join(DEFAULT_SQLITE_FILE)),
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`; other URLs
/// unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("mysql://u:p@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        // The last '@' of the authority ends the user info; a '@' in the
        // path is not looked at.
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db@x"),
            "postgres://u:***@h/db@x"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("sqlite://data/voxline.db"),
            "sqlite://data/voxline.db"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn default_file_url() {
        let data = Path::new("data");
        assert_eq!(database_url(None, data), "sqlite://data/voxline.db");
        assert_eq!(
            database_url(Some("mysql://u:p@h/db"), data),
            "mysql://u:p@h/db"
        );
        assert_eq!(
            sqlite_url(Path::new("/var/lib/voxline/x.db")),
            "sqlite:///var/lib/voxline/x.db"
        );
    }
}
