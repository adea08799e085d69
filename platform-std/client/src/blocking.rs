//! [`BlockingClient`]: the async [`Client`] for code without an async runtime.

use std::time::Duration;

use shoal_core::{GroupId, LogIndex, NodeId};

use crate::lock::BlockingLockGuard;
use crate::protocol::{
    HealthInfo, LeaseInfo, MemberInfo, NodeInfo, Permission, ReadMode, RoleInfo, StatusInfo,
    UserInfo,
};
use crate::{
    BatchOutcome, Client, ClientConfig, ClientError, Lease, LeaseKeeper, LockState, Revoked,
    Transaction, TxnOutcome, Unlocked, WatchStream,
};

/// A blocking client: the same operations as [`Client`], for code without an async runtime.
/// Each call runs the async one to completion on the calling thread.
#[derive(Clone, Debug)]
pub struct BlockingClient {
    inner: Client,
}

macro_rules! blocking {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self $(, $arg: $ty)*) -> Result<$ret, ClientError> {
                async_io::block_on(self.inner.$name($($arg),*))
            }
        )*
    };
}

impl BlockingClient {
    /// A blocking client for `config`.
    pub fn new(config: ClientConfig) -> Result<BlockingClient, ClientError> {
        Ok(BlockingClient {
            inner: Client::new(config)?,
        })
    }

    /// The async client inside (sharing connection and session).
    pub fn async_client(&self) -> &Client {
        &self.inner
    }

    /// This client's session id.
    pub fn client_id(&self) -> u64 {
        self.inner.client_id()
    }

    blocking! {
        /// See [`Client::get`].
        fn get(&self, key: &[u8], mode: ReadMode) -> Option<NodeInfo>;
        /// See [`Client::batch_get`].
        fn batch_get(&self, keys: &[&[u8]], mode: ReadMode) -> Vec<Option<NodeInfo>>;
        /// See [`Client::list`].
        fn list(&self, dir: &[u8], mode: ReadMode) -> Vec<NodeInfo>;
        /// See [`Client::put`].
        fn put(&self, key: &[u8], value: &[u8]) -> LogIndex;
        /// See [`Client::remove`].
        fn remove(&self, key: &[u8]) -> LogIndex;
        /// See [`Client::mkdir`].
        fn mkdir(&self, key: &[u8]) -> LogIndex;
        /// See [`Client::txn`].
        fn txn(&self, txn: Transaction) -> TxnOutcome;
        /// See [`Client::batch_put`].
        fn batch_put(&self, pairs: &[(&[u8], &[u8])]) -> BatchOutcome;
        /// See [`Client::batch_remove`].
        fn batch_remove(&self, keys: &[&[u8]]) -> BatchOutcome;
        /// See [`Client::cas`].
        fn cas(&self, key: &[u8], expect: Option<&[u8]>, value: &[u8]) -> LogIndex;
        /// See [`Client::put_temp`].
        fn put_temp(&self, key: &[u8], value: &[u8], ttl: Duration) -> LogIndex;
        /// See [`Client::make_temp_dir`].
        fn make_temp_dir(&self, key: &[u8], ttl: Duration) -> LogIndex;
        /// See [`Client::update_ttl`].
        fn update_ttl(&self, key: &[u8], ttl: Duration) -> LogIndex;
        /// See [`Client::try_lock`].
        fn try_lock(&self, key: &[u8], lease: Duration, wait: Duration) -> LockState;
        /// See [`Client::unlock`].
        fn unlock(&self, key: &[u8]) -> Unlocked;
        /// See [`Client::update_lock_lease`].
        fn update_lock_lease(&self, key: &[u8], lease: Duration) -> LogIndex;
        /// See [`Client::status`].
        fn status(&self) -> StatusInfo;
        /// See [`Client::health`].
        fn health(&self) -> HealthInfo;
        /// See [`Client::members`].
        fn members(&self) -> Vec<MemberInfo>;
        /// See [`Client::add_member`].
        fn add_member(&self, id: NodeId, raft_addr: String, observer: bool) -> LogIndex;
        /// See [`Client::promote_member`].
        fn promote_member(&self, id: NodeId) -> LogIndex;
        /// See [`Client::remove_member`].
        fn remove_member(&self, id: NodeId) -> LogIndex;
        /// See [`Client::transfer_leader`].
        fn transfer_leader(&self, to: NodeId) -> LogIndex;
        /// See [`Client::snapshot`].
        fn snapshot(&self) -> LogIndex;
        /// See [`Client::groups`].
        fn groups(&self) -> Vec<GroupId>;
        /// See [`Client::create_group`].
        fn create_group(&self, group: GroupId, members: Vec<NodeId>) -> LogIndex;
        /// See [`Client::remove_group`].
        fn remove_group(&self, group: GroupId) -> LogIndex;
        /// See [`Client::lease_grant`].
        fn lease_grant(&self, ttl: Duration) -> Lease;
        /// See [`Client::lease_keep_alive`].
        fn lease_keep_alive(&self, id: u64) -> Lease;
        /// See [`Client::lease_revoke`].
        fn lease_revoke(&self, id: u64) -> Revoked;
        /// See [`Client::keep_alive`]; the renewals run on the client's background task.
        fn keep_alive(&self, id: u64) -> LeaseKeeper;
        /// See [`Client::leases`].
        fn leases(&self, mode: ReadMode) -> Vec<LeaseInfo>;
        /// See [`Client::lease_info`].
        fn lease_info(&self, id: u64, mode: ReadMode) -> LeaseInfo;
        /// See [`Client::put_temp_lease`].
        fn put_temp_lease(&self, key: &[u8], value: &[u8], lease: u64) -> LogIndex;
        /// See [`Client::make_temp_dir_lease`].
        fn make_temp_dir_lease(&self, key: &[u8], lease: u64) -> LogIndex;
        /// See [`Client::try_lock_lease`].
        fn try_lock_lease(&self, key: &[u8], lease: u64) -> LockState;
        /// See [`Client::authenticate`].
        fn authenticate(&self) -> (String, u64);
        /// See [`Client::auth_enable`].
        fn auth_enable(&self) -> LogIndex;
        /// See [`Client::auth_disable`].
        fn auth_disable(&self) -> LogIndex;
        /// See [`Client::auth_status`].
        fn auth_status(&self) -> bool;
        /// See [`Client::user_add`].
        fn user_add(&self, name: &str, password: &str) -> LogIndex;
        /// See [`Client::user_delete`].
        fn user_delete(&self, name: &str) -> LogIndex;
        /// See [`Client::user_passwd`].
        fn user_passwd(&self, name: &str, password: &str) -> LogIndex;
        /// See [`Client::user_grant_role`].
        fn user_grant_role(&self, name: &str, role: &str) -> LogIndex;
        /// See [`Client::user_revoke_role`].
        fn user_revoke_role(&self, name: &str, role: &str) -> LogIndex;
        /// See [`Client::user_list`].
        fn user_list(&self) -> Vec<String>;
        /// See [`Client::user_get`].
        fn user_get(&self, name: &str) -> UserInfo;
        /// See [`Client::role_add`].
        fn role_add(&self, name: &str) -> LogIndex;
        /// See [`Client::role_delete`].
        fn role_delete(&self, name: &str) -> LogIndex;
        /// See [`Client::role_list`].
        fn role_list(&self) -> Vec<String>;
        /// See [`Client::role_get`].
        fn role_get(&self, name: &str) -> RoleInfo;
        /// See [`Client::role_grant_permission`].
        fn role_grant_permission(&self, name: &str, permission: Permission) -> LogIndex;
        /// See [`Client::role_revoke_permission`].
        fn role_revoke_permission(&self, name: &str, key: &[u8], prefix: bool) -> LogIndex;
    }

    /// See [`Client::lock`]; the lease is renewed on a background task until the guard is
    /// released or dropped.
    pub fn lock(
        &self,
        key: &[u8],
        lease: Duration,
        wait: Duration,
    ) -> Result<BlockingLockGuard, ClientError> {
        async_io::block_on(self.inner.lock(key, lease, wait)).map(BlockingLockGuard::new)
    }

    /// See [`Client::watch`]; iterate the returned [`WatchStream`] with
    /// [`WatchStream::next_blocking`].
    pub fn watch(&self, keys: &[&[u8]], from_index: LogIndex) -> WatchStream {
        self.inner.watch(keys, from_index)
    }
}
