//! Operator overrides — removing another session's temporary node, releasing a lock someone
//! else holds, abandoning a stuck membership change — pass one gate, [`admin_allowed`], and
//! each one allowed is logged with the address of the connection that asked. The gate is the
//! one place that decides who may override: with users and roles it will ask for `root`.

use shoal_client::protocol::Response;

use super::clients::Conn;

/// Whether the client on `conn` may perform the operator override `what` (words for the log
/// and for a refusal). Every connection may today; a refusal is the answer to send instead.
pub fn admin_allowed(conn: &Conn, what: &str) -> Result<(), Response> {
    log::warn!(
        "operator override by the client at {} (connection {}): {what}",
        conn.peer,
        conn.id
    );
    Ok(())
}
