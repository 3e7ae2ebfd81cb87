//! The Fourier half of the transforms: a ring's pixel values to its phases
//! `Σⱼ v_j·e^{−imφⱼ}` for `m = 0..=mmax` and back, through real FFTs of the
//! ring's length (`realfft` on `rustfft`: rings of `4i` pixels are rarely
//! powers of two). Orders past the ring's Nyquist frequency alias onto it,
//! as they do on the sphere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex64;

/// Rings up to this length are planned by the process-wide planner: every
/// ring of nside ≤ 1024, whose plans hold a few tens of MB of twiddles. Planning
/// them costs about 0.18 s of a 1.6 s `alm2map` at nside 1024 (lmax 2048).
const SHARED_PLANS_UP_TO: usize = 4096;

/// The forward and inverse real FFT of one ring length.
type PlanPair = (Arc<dyn RealToComplex<f64>>, Arc<dyn ComplexToReal<f64>>);

/// Forward and inverse real FFT plans for every ring length of a grid.
pub(crate) struct RingFfts {
    plans: HashMap<usize, PlanPair>,
}

/// Buffers one thread reuses from ring to ring.
#[derive(Default)]
pub(crate) struct FftScratch {
    real: Vec<f64>,
    spectrum: Vec<Complex64>,
    work: Vec<Complex64>,
}

/// `e^{i·s·m·φ₀}` for `m = 0, 1, 2, …`, by rotation, re-anchored on
/// `sin`/`cos` every 32 orders so the error stays near one rounding.
/// Computed as the loops that use it go, rather than stored first: with a
/// separate pass filling a vector, and a division per order for the
/// negative bin, the synthesis' phase loop took half as long again at
/// nside 64 (perf samples against the Legendre sums).
fn shifts(phi0: f64, sign: f64) -> impl Iterator<Item = Complex64> {
    let step = Complex64::from_polar(1.0, sign * phi0);
    let mut value = Complex64::new(1.0, 0.0);
    (0usize..).map(move |m| {
        if m % 32 == 0 {
            value = Complex64::from_polar(1.0, sign * phi0 * m as f64);
        }
        let current = value;
        value *= step;
        current
    })
}

impl RingFfts {
    /// Plans for the given ring lengths. Rings of up to [`SHARED_PLANS_UP_TO`]
    /// pixels are planned by one planner shared by the process, which keeps
    /// every plan it made: small transforms (the one-shot `map2alm` plans on
    /// every call) reuse the plans and their twiddle factors, which with the
    /// bins counted instead of divided took 10–15% off a call at nside 64.
    /// Longer rings get fresh plans, so that what the process keeps stays
    /// bounded.
    pub(crate) fn new(lengths: impl IntoIterator<Item = usize>) -> Self {
        static PLANNER: OnceLock<Mutex<RealFftPlanner<f64>>> = OnceLock::new();
        let mut shared = PLANNER
            .get_or_init(|| Mutex::new(RealFftPlanner::new()))
            .lock()
            // A panic elsewhere while planning leaves the cache usable.
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut own = RealFftPlanner::<f64>::new();
        let mut plans = HashMap::new();
        for len in lengths {
            plans.entry(len).or_insert_with(|| {
                let planner = if len <= SHARED_PLANS_UP_TO {
                    &mut *shared
                } else {
                    &mut own
                };
                (planner.plan_fft_forward(len), planner.plan_fft_inverse(len))
            });
        }
        RingFfts { plans }
    }

    /// `out[m] = weight · Σⱼ values[j]·e^{−im(φ₀ + 2πj/n)}` for `m = 0..=mmax`.
    pub(crate) fn analyse(
        &self,
        values: &[f64],
        phi0: f64,
        weight: f64,
        out: &mut [Complex64],
        scratch: &mut FftScratch,
    ) {
        let n = values.len();
        let forward = &self.plans[&n].0;
        scratch.real.clear();
        // healpy's UNSEEN pixels count as zero (the maps are read as given, not copied).
        scratch
            .real
            .extend(values.iter().map(|&v| super::transform::unseen_as_zero(v)));
        scratch.spectrum.resize(n / 2 + 1, Complex64::default());
        scratch
            .work
            .resize(forward.get_scratch_len(), Complex64::default());
        forward
            .process_with_scratch(&mut scratch.real, &mut scratch.spectrum, &mut scratch.work)
            .expect("buffers sized from the plan");
        // k = m mod n, counted rather than divided.
        let mut k = 0;
        for (value, s) in out.iter_mut().zip(shifts(phi0, -1.0)) {
            let bin = if k <= n / 2 {
                scratch.spectrum[k]
            } else {
                scratch.spectrum[n - k].conj()
            };
            *value = bin * s * weight;
            k += 1;
            if k == n {
                k = 0;
            }
        }
    }

    /// `values[j] = Σ_{m=−mmax..mmax} f(m)·e^{im(φ₀ + 2πj/n)}` with
    /// `f(−m) = conj f(m)`, from `phases[m] = f(m)`, `m = 0..=mmax`.
    pub(crate) fn synthesise(
        &self,
        phases: &[Complex64],
        phi0: f64,
        values: &mut [f64],
        scratch: &mut FftScratch,
    ) {
        let n = values.len();
        let inverse = &self.plans[&n].1;
        let half = n / 2;
        scratch.spectrum.clear();
        scratch.spectrum.resize(half + 1, Complex64::default());
        // k = m mod n, counted rather than divided.
        let mut k = 0;
        for (m, (f, s)) in phases.iter().zip(shifts(phi0, 1.0)).enumerate() {
            let value = f * s;
            // +m lands on bin m mod n, −m on bin (n − m mod n) mod n; only
            // bins 0..=n/2 are stored, the others are their conjugates.
            if k <= half {
                scratch.spectrum[k] += value;
            }
            if m > 0 {
                // (n − k) mod n without a division.
                let k_neg = if k == 0 { 0 } else { n - k };
                if k_neg <= half {
                    scratch.spectrum[k_neg] += value.conj();
                }
            }
            k += 1;
            if k == n {
                k = 0;
            }
        }
        // The spectrum is Hermitian: its zero and Nyquist bins are real up to rounding.
        scratch.spectrum[0].im = 0.0;
        if n.is_multiple_of(2) {
            scratch.spectrum[half].im = 0.0;
        }
        scratch
            .work
            .resize(inverse.get_scratch_len(), Complex64::default());
        inverse
            .process_with_scratch(&mut scratch.spectrum, values, &mut scratch.work)
            .expect("buffers sized from the plan and a Hermitian spectrum");
    }
}
