//! The server binary contains none of the simulator's planted bugs: they are chosen per node
//! through the core's `Plant` hooks, and shoald builds every node with `NoPlant`, so no cargo
//! feature (the test suite compiles the whole workspace at once) can put them into it.

// The names of the planted bugs, from the simulator's own list.
include!("../../tests/src/sim/plant_names.rs");

#[test]
fn shoald_contains_none_of_the_planted_bugs() {
    let path = env!("CARGO_BIN_EXE_shoald");
    let binary = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    assert!(
        binary.len() > 1 << 20,
        "{path} does not look like the server binary"
    );
    for name in NAMES {
        let found = binary.windows(name.len()).any(|w| w == name.as_bytes());
        assert!(!found, "{path} contains the planted bug `{name}`");
    }
}
