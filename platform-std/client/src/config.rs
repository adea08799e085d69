//! [`ClientConfig`]: where a client connects and how long it keeps trying.

use std::time::Duration;

use shoal_core::GroupId;

/// How a [`Client`](crate::Client) reaches the cluster and how long it keeps trying.
#[derive(Clone, Debug)]
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
        }
    }

    /// The same configuration for another group.
    pub fn with_group(mut self, group: GroupId) -> ClientConfig {
        self.group = group;
        self
    }

    /// The same configuration with another overall deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.timeout = timeout;
        self
    }
}
