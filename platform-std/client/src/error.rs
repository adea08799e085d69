//! What can go wrong with a client call, sorted by what the caller may conclude about the
//! operation: it certainly failed, it certainly did not happen, or nobody knows.

use shoal_kv::KvError;

use crate::protocol::ErrorCode;

/// What a failed call tells the caller about the operation's outcome. `shoalctl` turns it into
/// its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The cluster answered: the operation was refused and changed nothing (exit code 1).
    Definite,
    /// The request was malformed or the caller misused the API (exit code 2).
    Usage,
    /// A write was sent but no answer came back before the deadline: it may or may not have
    /// been applied (exit code 3).
    Indeterminate,
    /// No node could take the request before the deadline; it did not happen (exit code 4).
    Unavailable,
}

impl ErrorClass {
    /// The `shoalctl` exit code of this class.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Definite => 1,
            ErrorClass::Usage => 2,
            ErrorClass::Indeterminate => 3,
            ErrorClass::Unavailable => 4,
        }
    }

    /// The class as a lower-case word (used in JSON output).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Definite => "definite",
            ErrorClass::Usage => "usage",
            ErrorClass::Indeterminate => "indeterminate",
            ErrorClass::Unavailable => "unavailable",
        }
    }
}

/// Why a client call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// DtKV refused the operation (not found, CAS mismatch, lock held, ...). Nothing changed.
    Kv(KvError),
    /// DtKV refused the write before it was proposed, and the server said more than the
    /// error's own sentence: the limit it passed and, in a transaction, which item. Nothing
    /// changed.
    KvRefused {
        /// DtKV's error.
        error: KvError,
        /// The server's explanation.
        message: String,
    },
    /// An operation of the branch a transaction chose was refused, so nothing of the
    /// transaction was applied.
    TxnAborted {
        /// Which branch was chosen (true: every compare held).
        succeeded: bool,
        /// The 0-based position of the refused operation in that branch.
        op: usize,
        /// Why it was refused.
        error: KvError,
    },
    /// The server refused the request with a definite error other than a DtKV one (unknown
    /// group, conflicting membership change, internal error, unsupported version).
    Refused {
        /// The server's error class.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The request is malformed (bad argument, or the server answered `BadRequest`).
    BadRequest {
        /// What was wrong.
        message: String,
    },
    /// The request passed one of the server's limits (keys in one batch, bytes of one answer
    /// or request, watches on one connection); the message names the limit and the `shoald`
    /// flag that sets it. Nothing happened; the same request would be refused again, so split
    /// it.
    OverLimit {
        /// The server's explanation.
        message: String,
    },
    /// No node accepted the request before the deadline (every node was unreachable, not the
    /// leader, or unavailable). The operation did not happen.
    Unavailable {
        /// How many attempts were made.
        attempts: u32,
        /// The last problem seen.
        last: String,
    },
    /// A write was sent at least once but no answer arrived before the deadline: it may or may
    /// not have been applied. Reading the key tells which.
    Indeterminate {
        /// How many attempts were made.
        attempts: u32,
        /// The last problem seen.
        last: String,
    },
    /// The server answered something that does not fit the request (a server bug or a
    /// protocol mismatch). For a write, the outcome is unknown.
    Protocol {
        /// What was unexpected.
        message: String,
    },
    /// Auth is enabled and the user may not do this (a missing role or permission). Nothing
    /// changed.
    PermissionDenied {
        /// What was refused, and why.
        message: String,
    },
    /// Auth is enabled and the client could not prove a user: no user configured, a wrong
    /// name or password. Nothing changed. (An expired token is not reported: the client logs
    /// in again by itself.)
    AuthFailed {
        /// Why.
        message: String,
    },
}

impl ClientError {
    /// What the failure says about the operation's outcome.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::Kv(_)
            | ClientError::KvRefused { .. }
            | ClientError::TxnAborted { .. }
            | ClientError::Refused { .. }
            | ClientError::PermissionDenied { .. }
            | ClientError::AuthFailed { .. } => ErrorClass::Definite,
            ClientError::BadRequest { .. } | ClientError::OverLimit { .. } => ErrorClass::Usage,
            ClientError::Indeterminate { .. } | ClientError::Protocol { .. } => {
                ErrorClass::Indeterminate
            }
            ClientError::Unavailable { .. } => ErrorClass::Unavailable,
        }
    }

    /// The `shoalctl` exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        self.class().exit_code()
    }

    /// Whether the node refused the write because its disk is full ([`ErrorCode::NoSpace`]):
    /// nothing of it was applied, and the node takes writes again once space returns.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            ClientError::Refused {
                code: ErrorCode::NoSpace,
                ..
            }
        )
    }

    /// The DtKV error, if DtKV refused the operation.
    pub fn kv(&self) -> Option<KvError> {
        match self {
            ClientError::Kv(e)
            | ClientError::KvRefused { error: e, .. }
            | ClientError::TxnAborted { error: e, .. } => Some(*e),
            _ => None,
        }
    }

    /// A short machine-readable name of the failure (`NotFound`, `Unavailable`, ...).
    pub fn name(&self) -> String {
        match self {
            ClientError::Kv(e)
            | ClientError::KvRefused { error: e, .. }
            | ClientError::TxnAborted { error: e, .. } => format!("{e:?}"),
            ClientError::Refused { code, .. } => format!("{code:?}"),
            ClientError::BadRequest { .. } => "BadRequest".into(),
            ClientError::OverLimit { .. } => "LimitExceeded".into(),
            ClientError::Unavailable { .. } => "Unavailable".into(),
            ClientError::Indeterminate { .. } => "Indeterminate".into(),
            ClientError::Protocol { .. } => "Protocol".into(),
            ClientError::PermissionDenied { .. } => "PermissionDenied".into(),
            ClientError::AuthFailed { .. } => "AuthFailed".into(),
        }
    }

    /// The error a server's definite `Error` answer stands for.
    pub(crate) fn from_answer(
        code: ErrorCode,
        kv: Option<KvError>,
        message: String,
    ) -> ClientError {
        match (code, kv) {
            // The server says more than the error's own sentence (the limit passed, the
            // transaction item): keep its words.
            (ErrorCode::Kv, Some(e)) if message != e.message() => {
                ClientError::KvRefused { error: e, message }
            }
            (ErrorCode::Kv, Some(e)) => ClientError::Kv(e),
            (ErrorCode::BadRequest, _) => ClientError::BadRequest { message },
            (ErrorCode::LimitExceeded, _) => ClientError::OverLimit { message },
            (ErrorCode::PermissionDenied, _) => ClientError::PermissionDenied { message },
            (ErrorCode::AuthFailed, _) => ClientError::AuthFailed { message },
            (code, _) => ClientError::Refused { code, message },
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ClientError {
        ClientError::BadRequest {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Kv(e) => write!(f, "refused by DtKV ({e:?}, code {}): {e}", e.code()),
            ClientError::KvRefused { error, message } => {
                write!(
                    f,
                    "refused by DtKV ({error:?}, code {}): {message}",
                    error.code()
                )
            }
            ClientError::TxnAborted {
                succeeded,
                op,
                error,
            } => write!(
                f,
                "transaction aborted, nothing applied: {} operation {op} was refused by DtKV \
                 ({error:?}, code {}): {error}",
                if *succeeded { "success" } else { "failure" },
                error.code()
            ),
            ClientError::Refused { code, message } => {
                write!(f, "refused by the server ({code:?}): {message}")
            }
            ClientError::BadRequest { message } => write!(f, "bad request: {message}"),
            ClientError::OverLimit { message } => {
                write!(f, "over a server limit, nothing happened: {message}")
            }
            ClientError::Unavailable { attempts, last } => write!(
                f,
                "no node took the request after {attempts} attempt(s); it did not happen \
                 (last problem: {last})"
            ),
            ClientError::Indeterminate { attempts, last } => write!(
                f,
                "the write was sent but no answer arrived after {attempts} attempt(s); it may or \
                 may not have been applied — read the key to find out (last problem: {last})"
            ),
            ClientError::Protocol { message } => write!(
                f,
                "unexpected answer from the server (outcome unknown): {message}"
            ),
            ClientError::PermissionDenied { message } => {
                write!(f, "permission denied: {message}")
            }
            ClientError::AuthFailed { message } => write!(f, "authentication failed: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}
