//! Each fixture case as its own named test.
//!
//! A fixture-driven test target (`harness = false`) lists its cases from the
//! manifest at run time and hands them to [`run`], so that `cargo test CASE`
//! runs one case, and every case passes or fails under its own name.
//!
//! ```no_run
//! use idx_flow_testing::trials::{case, run};
//! let trials = ["a", "b"].map(|name| case(format!("reference::{name}"), move || assert!(!name.is_empty())));
//! run(trials.into());
//! ```

use libtest_mimic::{Arguments, Trial};

/// A test named `name` that runs `check`; a panic in `check` fails it with
/// the panic's message (libtest-mimic catches it).
pub fn case(name: impl Into<String>, check: impl FnOnce() + Send + 'static) -> Trial {
    Trial::test(name, move || {
        check();
        Ok(())
    })
}

/// Runs `trials` with the command-line arguments of `cargo test` and exits
/// with its status. There must be at least one: a fixture set without a case
/// of this target is a failure, not a silent pass.
pub fn run(trials: Vec<Trial>) -> ! {
    let args = Arguments::from_args();
    let trials = if trials.is_empty() {
        vec![Trial::test("fixture_cases_exist", || {
            Err("no fixture case found for this test target".into())
        })]
    } else {
        trials
    };
    libtest_mimic::run(&args, trials).exit()
}
