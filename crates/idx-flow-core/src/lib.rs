//! # idx-flow-core
//!
//! What every idx-flow module family shares on burn, and nothing more: the
//! PyTorch state-dict machinery ([`state_dict`]: [`TorchState`],
//! [`StateDict`]), seeded initialisation with PyTorch's fan rules ([`init`]),
//! the counter-based random numbers behind both ([`rng`]), accurate sums over
//! long axes ([`reduce`]), and the argument checks of the `try_forward`
//! convention. The layers themselves live in the family crates
//! (`idx-flow-nn`, `idx-flow-pde`, `idx-flow-spectral`, `idx-flow-equivariant`).
//!
//! ```
//! use burn::tensor::Device;
//! use idx_flow_core::init::{Initializer, WeightInit, with_seed};
//!
//! let device = Device::default();
//! // The same seed draws the same weights.
//! let draw = || with_seed(7, || Initializer::new(WeightInit::XavierUniform).init([4, 3, 5], &device));
//! let (a, b) = (draw()?, draw()?);
//! assert_eq!(a.into_data(), b.into_data());
//! # Ok::<(), idx_flow_core::Error>(())
//! ```

#![warn(missing_docs)]

pub mod init;
pub mod reduce;
pub mod rng;
pub mod state_dict;

pub use idx_flow_healpix::{Error, Result};
pub use init::{Initializer, Nonlinearity, WeightInit};
pub use state_dict::{StateDict, TorchState};

/// Panics with the error's message: the `forward` half of the `try_forward` convention.
pub fn or_panic<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Checks that a probability is in `[0, 1]`.
pub fn check_prob(name: &'static str, p: f64) -> Result<()> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::arg(
            name,
            format!("got {p}, expected a probability in [0, 1]"),
        ))
    }
}

/// Checks that a size is at least 1.
pub fn check_positive(name: &'static str, v: usize) -> Result<()> {
    if v >= 1 {
        Ok(())
    } else {
        Err(Error::arg(name, "got 0, expected at least 1"))
    }
}
