//! Spherical-harmonic transforms of HEALPix maps, as healpy computes them:
//! [`map2alm`] (with healpy's Jacobi refinement `iter`) and [`alm2map`],
//! RING or NESTED, any nside, `lmax ≤ 3·nside − 1`, coefficients in healpy's
//! layout ([`Alm`]), in float64; and for fields of spin `s ≥ 1` (a tangent
//! vector field's two components, Stokes Q and U) [`map2alm_spin`] and
//! [`alm2map_spin`] with healpy's gradient / curl (E / B) convention, with
//! [`map2alm_pol`] / [`alm2map_pol`] for I, Q, U maps as healpy's `pol=True`.
//!
//! How: the map's rings are transformed by real FFTs of their own lengths
//! (`realfft`), and the normalised associated Legendre functions are run up
//! through `l` by their three-term recursion, 32 ring pairs at a time on
//! the CPU's widest vectors, with libsharp's exponent scaling so that
//! nothing underflows next to the poles at `lmax` 4096 and beyond. North
//! and south rings share one recursion; the spin transforms run the Wigner
//! recursion of `d^l_{m,∓s}` the same way. As libsharp does, a ring takes
//! no part in orders past `lmax·sin θ` plus a margin, where its functions
//! are negligible. The work is split over rayon's
//! pool by order `m` and by ring, and the result does not depend on the
//! number of threads.
//!
//! For many transforms of one size, build a [`SphericalTransform`] once;
//! the functions here build one per call.
//!
//! ```
//! use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
//! use idx_flow_healpix::sht::{alm2map, map2alm};
//!
//! // z = cos θ at every pixel is √(4π/3)·Y_10.
//! let grid = HealpixGrid::nested(16)?;
//! let map: Vec<f64> = (0..grid.npix()).map(|p| grid.pix2vec(p).map(|v| v[2])).collect::<Result<_, _>>()?;
//! let alm = map2alm(&map, Ordering::Nested, 8, 3)?;
//! let y10 = (4.0 * std::f64::consts::PI / 3.0).sqrt();
//! assert!((alm.get(1, 0).unwrap().re - y10).abs() < 1e-6);
//! assert!(alm.get(2, 0).unwrap().norm() < 1e-6);
//! let back = alm2map(&alm, 16, Ordering::Nested)?;
//! assert!(back.iter().zip(&map).all(|(a, b)| (a - b).abs() < 1e-6));
//! # Ok::<(), idx_flow_healpix::Error>(())
//! ```

mod alm;
mod legendre;
mod phases;
mod rings;
mod spin;
mod spin_sums;
mod transform;
mod wide;
mod wigner;

pub use alm::Alm;
/// The complex type of the coefficients (num-complex's, as rustfft uses it).
pub use rustfft::num_complex::Complex64;
pub use transform::{SphericalTransform, UNSEEN};

use crate::geometry::{Ordering, npix2nside};
use crate::{Error, Result};

/// The nside of a map, or an error naming its length.
fn nside_of(map: &[f64]) -> Result<u32> {
    npix2nside(map.len() as u64).ok_or_else(|| Error::Shape {
        context: "spherical-harmonic transform".into(),
        expected: "a HEALPix map of 12·nside² pixels".into(),
        got: format!("{} pixels", map.len()),
    })
}

/// `healpy.map2alm(map, lmax=lmax, iter=iter)` for a map in `ordering`
/// (the nside follows from its length; `mmax = lmax`).
pub fn map2alm(map: &[f64], ordering: Ordering, lmax: usize, iter: usize) -> Result<Alm> {
    SphericalTransform::new(nside_of(map)?, lmax, None)?.map2alm(map, ordering, iter)
}

/// `healpy.alm2map(alm, nside)`, written in `ordering`.
pub fn alm2map(alm: &Alm, nside: u32, ordering: Ordering) -> Result<Vec<f64>> {
    SphericalTransform::new(nside, alm.lmax(), Some(alm.mmax()))?.alm2map(alm, ordering)
}

/// `healpy.map2alm_spin([q, u], spin, lmax)` (with `iter = 0`; larger `iter`
/// refines by Jacobi steps): the gradient and curl coefficients `[E, B]` of
/// a spin-`spin` map pair in `ordering`. See [`SphericalTransform::map2alm_spin`].
pub fn map2alm_spin(
    maps: [&[f64]; 2],
    spin: usize,
    ordering: Ordering,
    lmax: usize,
    iter: usize,
) -> Result<[Alm; 2]> {
    SphericalTransform::new(nside_of(maps[0])?, lmax, None)?
        .map2alm_spin(maps, spin, ordering, iter)
}

/// `healpy.alm2map_spin([e, b], nside, spin, lmax)`: the map pair `[Q, U]`, in `ordering`.
pub fn alm2map_spin(
    alms: [&Alm; 2],
    nside: u32,
    spin: usize,
    ordering: Ordering,
) -> Result<[Vec<f64>; 2]> {
    SphericalTransform::new(nside, alms[0].lmax(), Some(alms[0].mmax()))?
        .alm2map_spin(alms, spin, ordering)
}

/// `healpy.map2alm([i, q, u], lmax=lmax, iter=iter, pol=True)`: the
/// coefficients `[T, E, B]` of a temperature and polarisation (Stokes
/// I, Q, U) map triple in `ordering`; T as [`map2alm`], E and B of the
/// spin-2 pair as [`map2alm_spin`]. See [`SphericalTransform::map2alm_pol`].
///
/// ```
/// use idx_flow_healpix::geometry::Ordering;
/// use idx_flow_healpix::sht::{Alm, Complex64, alm2map_pol, map2alm_pol};
///
/// let mut t = Alm::zeros(12, 12)?;
/// t.set(2, 1, Complex64::new(0.3, 0.1))?;
/// let mut e = Alm::zeros(12, 12)?;
/// e.set(4, 2, Complex64::new(1.0, 0.0))?;
/// let b = Alm::zeros(12, 12)?;
/// let [i, q, u] = alm2map_pol([&t, &e, &b], 8, Ordering::Ring)?;
/// // Three Jacobi steps at lmax = 1.5·nside: E within 2e-6, as healpy's.
/// let [t2, e2, b2] = map2alm_pol([&i, &q, &u], Ordering::Ring, 12, 3)?;
/// assert!((t2.get(2, 1).unwrap() - t.get(2, 1).unwrap()).norm() < 1e-5);
/// assert!((e2.get(4, 2).unwrap() - e.get(4, 2).unwrap()).norm() < 1e-5);
/// assert!(b2.get(4, 2).unwrap().norm() < 1e-5);
/// # Ok::<(), idx_flow_healpix::Error>(())
/// ```
pub fn map2alm_pol(
    maps: [&[f64]; 3],
    ordering: Ordering,
    lmax: usize,
    iter: usize,
) -> Result<[Alm; 3]> {
    SphericalTransform::new(nside_of(maps[0])?, lmax, None)?.map2alm_pol(maps, ordering, iter)
}

/// `healpy.alm2map([t, e, b], nside, pol=True)`: the maps `[I, Q, U]`, in `ordering`.
pub fn alm2map_pol(alms: [&Alm; 3], nside: u32, ordering: Ordering) -> Result<[Vec<f64>; 3]> {
    SphericalTransform::new(nside, alms[0].lmax(), Some(alms[0].mmax()))?
        .alm2map_pol(alms, ordering)
}
