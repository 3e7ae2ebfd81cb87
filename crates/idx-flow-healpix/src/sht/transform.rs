//! [`SphericalTransform`]: a plan for one nside and band limit, holding what
//! every transform of that size reuses (rings, FFT plans, norms, the
//! NESTED→RING permutation).

use std::borrow::Cow;
use std::sync::OnceLock;

use rayon::prelude::*;
use rustfft::num_complex::Complex64;

use super::alm::Alm;
use super::legendre::{
    Analysis, GROUP, GroupPhases, LaneSums, Lanes, Synthesis, analyse_group, coefficient_count,
    diagonal_norms, recursion_coefficients, reduce_partial, synthesise_group,
};
use super::phases::{FftScratch, RingFfts};
use super::rings::{RingPair, order_limit, ring_pairs};
use crate::geometry::{Ordering, check_nside, nest2ring, nside2npix};
use crate::{Error, Result};

/// Ring pairs whose phases are held at once: bounds the phase buffer to
/// `(mmax + 1) · CHUNK` complex pairs while every order still has several
/// groups of work.
pub(super) const CHUNK: usize = 4 * GROUP;

/// Ring pairs per task when the synthesis turns the phases back into rings.
const SYNTHESIS_PAIRS: usize = 8;

/// healpy's `UNSEEN` marker of masked pixels, read as zero by the analysis (as healpy does).
pub const UNSEEN: f64 = -1.6375e30;

/// A pixel value as the analysis reads it: healpy's `UNSEEN` as zero.
#[inline(always)]
pub(super) fn unseen_as_zero(v: f64) -> f64 {
    if v == UNSEEN { 0.0 } else { v }
}

/// Spherical-harmonic transforms of one HEALPix nside up to one `lmax`
/// and `mmax`, as healpy's `map2alm` / `alm2map` compute them.
///
/// Build it once and reuse it: it holds the rings, the FFT plans of their
/// lengths and, for NESTED maps, the permutation to RING. Transforms are
/// multithreaded on rayon's pool (over orders `m` and rings), in float64,
/// and give the same bits on any number of threads.
///
/// ```
/// use idx_flow_healpix::geometry::Ordering;
/// use idx_flow_healpix::sht::{Alm, Complex64, SphericalTransform};
///
/// let sht = SphericalTransform::new(8, 16, None)?;
/// let mut alm = Alm::zeros(16, 16)?;
/// alm.set(3, 2, Complex64::new(1.0, 0.5))?;
/// let map = sht.alm2map(&alm, Ordering::Ring)?;
/// // Three Jacobi iterations recover the band-limited field closely.
/// let back = sht.map2alm(&map, Ordering::Ring, 3)?;
/// assert!((back.get(3, 2).unwrap() - alm.get(3, 2).unwrap()).norm() < 1e-6);
/// # Ok::<(), idx_flow_healpix::Error>(())
/// ```
pub struct SphericalTransform {
    nside: u32,
    lmax: usize,
    mmax: usize,
    pub(super) pairs: Vec<RingPair>,
    /// `cos θ` and `sin θ` of each group's pairs (padding lanes: `0` and `1`).
    groups: Vec<(Lanes, Lanes)>,
    /// The largest order each group's rings take part in ([`order_limit`]).
    group_limits: Vec<usize>,
    norms: Vec<f64>,
    /// The recursion's coefficients of every `m`, from `coef_offsets[m]`
    /// (about `lmax²/2` pairs: 33 MB at lmax 2048).
    coefs: Vec<[f64; 2]>,
    coef_offsets: Vec<usize>,
    pub(super) ffts: RingFfts,
    /// `ring_of_nested[p]`: the RING index of NESTED pixel `p`, built on first use.
    ring_of_nested: OnceLock<Vec<u32>>,
}

impl SphericalTransform {
    /// A plan for maps of `nside` and coefficients up to `lmax` (at most
    /// `3·nside − 1`, as healpy's default) and `mmax` (default `lmax`).
    pub fn new(nside: u32, lmax: usize, mmax: Option<usize>) -> Result<Self> {
        check_nside(nside as u64, Ordering::Ring)?;
        let limit = 3 * nside as usize - 1;
        if lmax > limit {
            return Err(Error::InvalidArgument {
                name: "lmax",
                message: format!("lmax {lmax} is above 3·nside − 1 = {limit} for nside {nside}"),
            });
        }
        let mmax = mmax.unwrap_or(lmax);
        if mmax > lmax {
            return Err(Error::InvalidArgument {
                name: "mmax",
                message: format!("mmax {mmax} exceeds lmax {lmax}; expected mmax ≤ lmax"),
            });
        }
        if nside2npix(nside) > u32::MAX as u64 {
            return Err(Error::InvalidNside {
                nside: nside as u64,
                expected: format!(
                    "at most 2^14 for spherical-harmonic transforms (nside {nside} has more than 2^32 pixels)"
                ),
            });
        }
        let pairs = ring_pairs(nside);
        let groups = pairs
            .chunks(GROUP)
            .map(|group| {
                let mut cos = [0.0; GROUP];
                let mut sin = [1.0; GROUP];
                for (lane, pair) in group.iter().enumerate() {
                    cos[lane] = pair.north.cos_theta;
                    sin[lane] = pair.north.sin_theta;
                }
                (cos, sin)
            })
            .collect();
        let group_limits = pairs
            .chunks(GROUP)
            .map(|group| {
                group
                    .iter()
                    .map(|pair| order_limit(lmax, 0, &pair.north))
                    .max()
                    .unwrap_or(lmax)
            })
            .collect();
        let ffts = RingFfts::new(pairs.iter().map(|pair| pair.north.len));
        let mut coef_offsets = Vec::with_capacity(mmax + 2);
        coef_offsets.push(0);
        for m in 0..=mmax {
            coef_offsets.push(coef_offsets[m] + coefficient_count(m, lmax));
        }
        let mut coefs = vec![[0.0; 2]; coef_offsets[mmax + 1]];
        let mut rest = coefs.as_mut_slice();
        let mut per_m = Vec::with_capacity(mmax + 1);
        for m in 0..=mmax {
            let (head, tail) = rest.split_at_mut(coefficient_count(m, lmax));
            per_m.push(head);
            rest = tail;
        }
        per_m
            .into_par_iter()
            .enumerate()
            .for_each(|(m, coef)| recursion_coefficients(m, coef));
        Ok(SphericalTransform {
            nside,
            lmax,
            mmax,
            pairs,
            groups,
            group_limits,
            norms: diagonal_norms(mmax),
            coefs,
            coef_offsets,
            ffts,
            ring_of_nested: OnceLock::new(),
        })
    }

    /// The maps' nside.
    pub fn nside(&self) -> u32 {
        self.nside
    }

    /// Largest degree.
    pub fn lmax(&self) -> usize {
        self.lmax
    }

    /// Largest order.
    pub fn mmax(&self) -> usize {
        self.mmax
    }

    fn coefficients(&self, m: usize) -> &[[f64; 2]] {
        &self.coefs[self.coef_offsets[m]..self.coef_offsets[m + 1]]
    }

    pub(super) fn npix(&self) -> usize {
        nside2npix(self.nside) as usize
    }

    pub(super) fn check_map(&self, map: &[f64]) -> Result<()> {
        if map.len() != self.npix() {
            return Err(Error::Shape {
                context: format!("spherical-harmonic transform of nside {}", self.nside),
                expected: format!("a map of 12·nside² = {} pixels", self.npix()),
                got: format!("{} pixels", map.len()),
            });
        }
        Ok(())
    }

    pub(super) fn check_alm(&self, alm: &Alm) -> Result<()> {
        if alm.lmax() != self.lmax || alm.mmax() != self.mmax {
            return Err(Error::Shape {
                context: format!("spherical-harmonic transform of nside {}", self.nside),
                expected: format!("alm of lmax {}, mmax {}", self.lmax, self.mmax),
                got: format!(
                    "lmax {}, mmax {} (Alm::resized converts)",
                    alm.lmax(),
                    alm.mmax()
                ),
            });
        }
        Ok(())
    }

    fn ring_of_nested(&self) -> Result<&[u32]> {
        if let Some(table) = self.ring_of_nested.get() {
            return Ok(table);
        }
        let table = (0..self.npix() as u64)
            .into_par_iter()
            .map(|p| nest2ring(self.nside, p).map(|r| r as u32))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.ring_of_nested.get_or_init(|| table))
    }

    /// The map in RING order: the map itself when it is RING already (no
    /// copy: at nside 1024 a map is 100 MB), else a reordered copy. healpy's
    /// `UNSEEN` pixels stay as they are: the ring FFTs and the residuals read
    /// them as zero ([`unseen_as_zero`]).
    pub(super) fn ring_map<'a>(
        &self,
        map: &'a [f64],
        ordering: Ordering,
    ) -> Result<Cow<'a, [f64]>> {
        self.check_map(map)?;
        Ok(match ordering {
            Ordering::Ring => Cow::Borrowed(map),
            Ordering::Nested => {
                let mut ring = vec![0.0; map.len()];
                for (&r, &v) in self.ring_of_nested()?.iter().zip(map) {
                    ring[r as usize] = v;
                }
                Cow::Owned(ring)
            }
        })
    }

    pub(super) fn reorder_from_ring(&self, ring: Vec<f64>, ordering: Ordering) -> Result<Vec<f64>> {
        Ok(match ordering {
            Ordering::Ring => ring,
            Ordering::Nested => self
                .ring_of_nested()?
                .iter()
                .map(|&r| ring[r as usize])
                .collect(),
        })
    }

    /// The coefficients of a real map, as `healpy.map2alm(map, lmax, mmax,
    /// iter=iter, use_weights=False)`: the pixel sum `4π/npix · Σ_p map_p·Y*_lm(p)`,
    /// refined by `iter` Jacobi steps (healpy's default is 3). Pixels equal to
    /// healpy's `UNSEEN` count as zero.
    pub fn map2alm(&self, map: &[f64], ordering: Ordering, iter: usize) -> Result<Alm> {
        let ring = self.ring_map(map, ordering)?;
        let weight = 4.0 * std::f64::consts::PI / self.npix() as f64;
        let mut alm = Alm::zeros(self.lmax, self.mmax)?;
        self.analyse(&ring, weight, alm.values_mut());
        let mut residual = vec![0.0; ring.len()];
        for _ in 0..iter {
            self.synthesise(alm.values(), &mut residual);
            residual
                .par_iter_mut()
                .zip(&ring[..])
                .for_each(|(r, &v)| *r = unseen_as_zero(v) - *r);
            self.analyse(&residual, weight, alm.values_mut());
        }
        Ok(alm)
    }

    /// The real map of coefficients (`healpy.alm2map(alm, nside)`):
    /// `Σ_lm a_lm·Y_lm(p)` over `m = −mmax..mmax` with `a_{l,−m} = (−1)^m conj(a_lm)`.
    pub fn alm2map(&self, alm: &Alm, ordering: Ordering) -> Result<Vec<f64>> {
        self.check_alm(alm)?;
        let mut ring = vec![0.0; self.npix()];
        self.synthesise(alm.values(), &mut ring);
        self.reorder_from_ring(ring, ordering)
    }

    /// The adjoint of [`alm2map`](Self::alm2map) taken as a complex-linear
    /// map: `Σ_p map_p·Y*_lm(p)`, that is `map2alm` with `iter = 0` and
    /// without the `4π/npix` weight. (With the real and imaginary parts of
    /// the `m > 0` coefficients as separate real inputs, the real adjoint of
    /// `alm2map` is this doubled for `m > 0`.)
    pub fn alm2map_adjoint(&self, map: &[f64], ordering: Ordering) -> Result<Alm> {
        let ring = self.ring_map(map, ordering)?;
        let mut alm = Alm::zeros(self.lmax, self.mmax)?;
        self.analyse(&ring, 1.0, alm.values_mut());
        Ok(alm)
    }

    /// `alm += weight · Σ_p ring_map_p·Y*_lm(p)`.
    fn analyse(&self, ring_map: &[f64], weight: f64, alm: &mut [Complex64]) {
        let (lmax, mmax) = (self.lmax, self.mmax);
        let mut by_order = Alm::split_by_order(alm, lmax, mmax);
        let groups_per_chunk = CHUNK / GROUP;
        let mut phases = vec![GroupPhases::default(); (mmax + 1) * groups_per_chunk];
        for (chunk_index, chunk) in self.pairs.chunks(CHUNK).enumerate() {
            let ring_phases: Vec<(Vec<Complex64>, Option<Vec<Complex64>>)> = chunk
                .par_iter()
                .map_init(FftScratch::default, |scratch, pair| {
                    let mut analyse = |ring: &super::rings::Ring| {
                        let mut out = vec![Complex64::default(); mmax + 1];
                        let values = &ring_map[ring.start..ring.start + ring.len];
                        self.ffts
                            .analyse(values, ring.phi0, weight, &mut out, scratch);
                        out
                    };
                    (analyse(&pair.north), pair.south.as_ref().map(&mut analyse))
                })
                .collect();
            // Regrouped by order, one order per task: the writes stay
            // within one order's groups, the reads stride over the rings.
            phases
                .par_chunks_mut(groups_per_chunk)
                .enumerate()
                .for_each(|(m, phases_m)| {
                    phases_m.fill(GroupPhases::default());
                    for (p, (north, south)) in ring_phases.iter().enumerate() {
                        let (n, s) = (
                            north[m],
                            south.as_ref().map_or(Complex64::default(), |s| s[m]),
                        );
                        let target = &mut phases_m[p / GROUP];
                        let lane = p % GROUP;
                        target.sym_re[lane] = n.re + s.re;
                        target.sym_im[lane] = n.im + s.im;
                        target.anti_re[lane] = n.re - s.re;
                        target.anti_im[lane] = n.im - s.im;
                    }
                });
            let group_range = chunk_index * groups_per_chunk
                ..(chunk_index * groups_per_chunk + chunk.len().div_ceil(GROUP));
            let groups = &self.groups[group_range.clone()];
            let limits = &self.group_limits[group_range];
            by_order.par_iter_mut().enumerate().for_each_init(
                Vec::new,
                |partial: &mut Vec<LaneSums<2>>, (m, alm_m)| {
                    // Zeroed here for every chunk and order.
                    partial.clear();
                    partial.resize(alm_m.len(), LaneSums::ZERO);
                    let coef = self.coefficients(m);
                    for (g, (cos, sin)) in groups.iter().enumerate() {
                        if m > limits[g] {
                            continue;
                        }
                        let start = (sin, self.norms[m]);
                        let mut acc = Analysis {
                            phases: &phases[m * groups_per_chunk + g],
                            partial,
                        };
                        analyse_group(m, lmax, coef, cos, start, &mut acc);
                    }
                    reduce_partial(partial, alm_m);
                },
            );
        }
    }

    /// `ring_map = Σ_lm a_lm·Y_lm` (overwritten).
    fn synthesise(&self, alm: &[Complex64], ring_map: &mut [f64]) {
        let (lmax, mmax) = (self.lmax, self.mmax);
        let groups_per_chunk = CHUNK / GROUP;
        let mut phases = vec![GroupPhases::default(); (mmax + 1) * groups_per_chunk];
        let mut slots = ring_slots(ring_map, &self.pairs);
        for (chunk_index, chunk) in self.pairs.chunks(CHUNK).enumerate() {
            let group_range = chunk_index * groups_per_chunk
                ..(chunk_index * groups_per_chunk + chunk.len().div_ceil(GROUP));
            let groups = &self.groups[group_range.clone()];
            let limits = &self.group_limits[group_range];
            phases
                .par_chunks_mut(groups_per_chunk)
                .enumerate()
                .for_each(|(m, phases_m)| {
                    let coef = self.coefficients(m);
                    let alm_m = &alm[Alm::order_range(lmax, m)];
                    for (g, (cos, sin)) in groups.iter().enumerate() {
                        if m > limits[g] {
                            phases_m[g] = GroupPhases::default();
                            continue;
                        }
                        let start = (sin, self.norms[m]);
                        let mut acc = Synthesis {
                            alm: alm_m,
                            phases: GroupPhases::default(),
                        };
                        synthesise_group(m, lmax, coef, cos, start, &mut acc);
                        phases_m[g] = acc.phases;
                    }
                });
            // Each task takes eight ring pairs: it reads their lanes of every
            // order's group phases (m outer, so each group's block is read
            // whole and in order) into per-ring phase rows, then runs the
            // rings' FFTs straight into the map. Gathering one ring at a time
            // instead strides over every order's block per ring: 19% of
            // alm2map at nside 256.
            let first_pair = chunk_index * CHUNK;
            let outputs = &mut slots[first_pair..first_pair + chunk.len()];
            chunk
                .par_chunks(SYNTHESIS_PAIRS)
                .zip(outputs.par_chunks_mut(SYNTHESIS_PAIRS))
                .enumerate()
                .for_each_init(
                    || (FftScratch::default(), Vec::new(), Vec::new()),
                    |(scratch, north, south), (task, (pairs, outs))| {
                        let first = task * SYNTHESIS_PAIRS;
                        north.resize_with(pairs.len(), Vec::new);
                        south.resize_with(pairs.len(), Vec::new);
                        for row in north.iter_mut().chain(south.iter_mut()) {
                            row.clear();
                        }
                        for m in 0..=mmax {
                            for (k, (n, s)) in north.iter_mut().zip(south.iter_mut()).enumerate() {
                                let (group, lane) = ((first + k) / GROUP, (first + k) % GROUP);
                                let ph = &phases[m * groups_per_chunk + group];
                                let (sym, anti) = (
                                    Complex64::new(ph.sym_re[lane], ph.sym_im[lane]),
                                    Complex64::new(ph.anti_re[lane], ph.anti_im[lane]),
                                );
                                n.push(sym + anti);
                                s.push(sym - anti);
                            }
                        }
                        for (k, (pair, (north_out, south_out))) in
                            pairs.iter().zip(outs.iter_mut()).enumerate()
                        {
                            self.ffts
                                .synthesise(&north[k], pair.north.phi0, north_out, scratch);
                            if let (Some(ring), Some(out)) = (&pair.south, south_out) {
                                self.ffts.synthesise(&south[k], ring.phi0, out, scratch);
                            }
                        }
                    },
                );
        }
    }
}

/// Each pair's rings as disjoint slices of `ring_map` (RING order), in pair
/// order: the north ring, and the south one where the pair has it.
pub(super) fn ring_slots<'a>(
    ring_map: &'a mut [f64],
    pairs: &[RingPair],
) -> Vec<(&'a mut [f64], Option<&'a mut [f64]>)> {
    // (start, len, pair, south?) of every ring, by position in the map.
    let mut rings: Vec<(usize, usize, usize, bool)> = pairs
        .iter()
        .enumerate()
        .flat_map(|(i, pair)| {
            let north = (pair.north.start, pair.north.len, i, false);
            std::iter::once(north).chain(pair.south.map(|r| (r.start, r.len, i, true)))
        })
        .collect();
    rings.sort_unstable_by_key(|r| r.0);
    let mut north: Vec<Option<&mut [f64]>> = (0..pairs.len()).map(|_| None).collect();
    let mut south: Vec<Option<&mut [f64]>> = (0..pairs.len()).map(|_| None).collect();
    let (mut rest, mut at) = (ring_map, 0);
    for (start, len, i, is_south) in rings {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - at);
        let (ring, tail) = tail.split_at_mut(len);
        (rest, at) = (tail, start + len);
        if is_south {
            south[i] = Some(ring);
        } else {
            north[i] = Some(ring);
        }
    }
    north
        .into_iter()
        .zip(south)
        .map(|(n, s)| (n.expect("every pair has a north ring"), s))
        .collect()
}
