//! The README's and docs/OPERATIONS.md's examples, run as written: every shell block marked
//! `<!-- doc-test: dev node -->` runs, command by command, against a fresh `shoald` with its
//! defaults (free ports substituted; see `shoal_testkit::docs`). A command that fails names
//! its document, line and section.

use std::path::Path;

use shoal_testkit::docs::{marked_examples, run_on_dev_node};

fn run_doc(relative: &str, at_least: usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let examples = marked_examples(&path, relative);
    assert!(
        examples.len() >= at_least,
        "{relative} marks {} examples; it had {at_least} (a marker lost?)",
        examples.len()
    );
    for example in &examples {
        assert!(
            !example.commands.is_empty(),
            "{relative}: an empty example in {:?}",
            example.section
        );
        run_on_dev_node(example);
    }
}

#[test]
fn the_readme_examples_work_on_a_dev_node() {
    run_doc("README.md", 3);
}

#[test]
fn the_operations_guide_examples_work_on_a_dev_node() {
    run_doc("docs/OPERATIONS.md", 4);
}
