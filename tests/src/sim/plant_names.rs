/// The names of every planted bug, in the order of `PlantedBug::ALL`.
pub const NAMES: [&str; 8] = [
    "vote-not-persisted",
    "commit-by-counting",
    "skip-truncate",
    "read-without-quorum",
    "kv-dedup-ignored",
    "kv-txn-half",
    "read-unchecked",
    "lease-ignores-clock",
];
