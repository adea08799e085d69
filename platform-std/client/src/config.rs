//! [`ClientConfig`]: where a client connects and how long it keeps trying.

use std::time::Duration;

use shoal_core::{ClusterId, GroupId};

/// How a [`Client`](crate::Client) reaches the cluster and how long it keeps trying. `Debug`
/// shows the user's name, never the password.
#[derive(Clone)]
pub struct ClientConfig {
    /// Client addresses (`host:port`) of some or all nodes; at least one.
    pub endpoints: Vec<String>,
    /// The Raft group requests go to (0 is the default group).
    pub group: GroupId,
    /// Overall deadline of one call, retries included.
    pub timeout: Duration,
    /// Longest wait for one attempt's answer before retrying elsewhere.
    pub attempt_timeout: Duration,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// TLS to the client ports (`None`: plaintext). Endpoints may carry `https://`.
    pub tls: Option<crate::tls::TlsConfig>,
    /// The user and password every connection logs in with (when the cluster has auth
    /// enabled). The password stays in memory: the client logs in again by itself when its
    /// token expires or a node refuses it.
    pub user: Option<(String, String)>,
    /// The cluster every request is meant for (`None`: the cluster of the first node that
    /// names its own, in a redirect). A node of another cluster refuses the request and does
    /// nothing; the client then asks another endpoint.
    pub cluster: Option<ClusterId>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("group", &self.group)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .field("tls", &self.tls.is_some())
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration for these endpoints with the defaults: group 0, 10 s per call, 3 s per
    /// attempt, 1 s per connection.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            group: 0,
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            user: None,
            tls: None,
            cluster: None,
        }
    }

    /// The same configuration for another group.
    pub fn with_group(mut self, group: GroupId) -> ClientConfig {
        self.group = group;
        self
    }

    /// The same configuration over TLS.
    pub fn with_tls(mut self, tls: crate::tls::TlsConfig) -> ClientConfig {
        self.tls = Some(tls);
        self
    }

    /// The same configuration, logging in as `user` with `password`.
    pub fn with_user(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> ClientConfig {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// The same configuration, for cluster `cluster` only.
    pub fn with_cluster(mut self, cluster: ClusterId) -> ClientConfig {
        self.cluster = Some(cluster);
        self
    }

    /// The same configuration with another overall deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.timeout = timeout;
        self
    }
}

/// An endpoint as written by a person or a script, checked and reduced to `host:port`.
///
/// `http://` or `https://` in front and one `/` behind are accepted (etcd users write
/// endpoints that way); `https://` asks for TLS, which [`Client::new`](crate::Client::new)
/// refuses without a TLS configuration ([`ClientConfig::with_tls`]). Anything without a host
/// and a port from 1 to 65535 is refused at once, so a typo fails as a usage error instead of as
/// ten seconds of connection retries.
pub fn parse_endpoint(endpoint: &str) -> Result<String, String> {
    let written = endpoint.trim();
    let lower = written.to_ascii_lowercase();
    let bare = if let Some(scheme) = ["http://", "https://"]
        .into_iter()
        .find(|s| lower.starts_with(s))
    {
        &written[scheme.len()..]
    } else {
        written
    };
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let malformed = |why: &str| {
        format!("endpoint `{written}` is not HOST:PORT (like 127.0.0.1:7002 or db1:7002): {why}")
    };
    if bare.contains("://") {
        return Err(malformed(
            "only http:// or https:// may be written in front",
        ));
    }
    let Some((host, port)) = bare.rsplit_once(':') else {
        return Err(malformed("it has no port"));
    };
    if host.is_empty() {
        return Err(malformed("it has no host"));
    }
    if host.contains(['/', ' ', '\t']) || (host.contains(':') && !host.starts_with('[')) {
        return Err(malformed("the host is not a name or an address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(bare.to_string()),
        _ => Err(malformed(&format!(
            "`{port}` is not a port from 1 to 65535"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_endpoint;
    use super::ClientConfig;
    use crate::protocol::{Response, SecretBytes};

    #[test]
    fn debug_output_never_shows_a_password_or_token() {
        let mut c = ClientConfig::new(["127.0.0.1:7002"]);
        c.user = Some(("alice".into(), "hunter2-secret".into()));
        let shown = format!("{c:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let answer = Response::Token {
            user: "alice".into(),
            token: SecretBytes(b"token-bytes-0123".to_vec()),
            expires_ms: 1,
        };
        let shown = format!("{answer:?}");
        assert!(shown.contains("16 bytes"), "{shown}");
        assert!(
            !shown.contains("116, 111, 107") && !shown.contains("token-bytes"),
            "{shown}"
        );
    }

    #[test]
    fn endpoints_as_people_write_them() {
        assert_eq!(parse_endpoint("127.0.0.1:7002").unwrap(), "127.0.0.1:7002");
        assert_eq!(
            parse_endpoint("http://127.0.0.1:7002").unwrap(),
            "127.0.0.1:7002"
        );
        assert_eq!(parse_endpoint("HTTP://db1:7002/").unwrap(), "db1:7002");
        assert_eq!(parse_endpoint("https://db1:7002").unwrap(), "db1:7002");
        assert_eq!(parse_endpoint(" [::1]:7002 ").unwrap(), "[::1]:7002");
        for bad in [
            "bogus",
            "bogus:",
            ":7002",
            "db1:0",
            "db1:70000",
            "db1:port",
            "https://db1",
            "ftp://db1:7002",
            "db1:7002/v3",
            "::1:7002",
            "",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
