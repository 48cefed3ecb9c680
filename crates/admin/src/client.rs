//! A minimal HTTP/1.1 client for the admin API (used by `voxline ctl`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node is not reachable.
    #[error("cannot reach the admin listener at {address}: {source}")]
    Connect {
        /// Admin address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("admin request failed: {0}")]
    Io(#[from] std::io::Error),
    /// The node did not answer in time.
    #[error("admin request timed out")]
    Timeout,
    /// The reply was not HTTP.
    #[error("malformed reply from the admin listener")]
    Malformed,
    /// The node answered with an error status.
    #[error("{status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Body of the reply.
        body: String,
    },
}

/// Sends `method path` (with an optional JSON body) and returns the reply
/// body when the status is 2xx.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, ClientError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        request_inner(address, method, path, body),
    )
    .await
    .map_err(|_| ClientError::Timeout)?
}

async fn request_inner(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, ClientError> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|source| ClientError::Connect { address, source })?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let text = String::from_utf8_lossy(&reply);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or(ClientError::Malformed)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(ClientError::Malformed)?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest).ok_or(ClientError::Malformed)?
    } else {
        rest.to_owned()
    };
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(ClientError::Status { status, body })
    }
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        s = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n").as_deref(),
            Some("Wikipedia")
        );
        assert_eq!(dechunk("zz\r\n"), None);
    }
}
