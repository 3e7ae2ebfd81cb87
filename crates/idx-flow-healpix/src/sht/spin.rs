//! Spin-weighted transforms on a [`SphericalTransform`] plan: a pair of
//! real maps of spin `s` (Stokes Q and U for `s = 2`, the two components of
//! a tangent vector field for `s = 1`) to its gradient and curl
//! coefficients (E and B) and back, as healpy's `map2alm_spin` /
//! `alm2map_spin` and the polarised `map2alm(..., pol=True)` /
//! `alm2map(..., pol=True)` compute them.

use std::borrow::Cow;

use rayon::prelude::*;
use rustfft::num_complex::Complex64;

use super::alm::Alm;
use super::legendre::LaneSums;
use super::phases::FftScratch;
use super::rings::{Ring, order_limit};
use super::spin_sums::{SpinAnalysis, SpinPhases, SpinSynthesis, reduce_spin_partial};
use super::transform::{CHUNK, SphericalTransform, ring_slots, unseen_as_zero};
use super::wigner::{Lanes, SpinOrder, spin_recurse};
use crate::geometry::Ordering;
use crate::{Error, Result};

/// Ring pairs per group in the analysis: 16 lanes fold onto 8 partial sums
/// per degree, which halves the partial sums' traffic per ring (at nside
/// 512, one thread: 1.56 s against 2.26 s with 8 lanes).
const ANALYSIS_LANES: usize = 16;
/// Ring pairs per group in the synthesis: its eight phase accumulators stay
/// in registers at 8 lanes, not at 16 (1.51 s against 1.84 s at nside 512).
const SYNTHESIS_LANES: usize = 8;

impl SphericalTransform {
    /// `Ok` if the spin transforms of this plan take `spin` (`1..=lmax`),
    /// else the error naming it.
    pub fn check_spin(&self, spin: usize) -> Result<()> {
        if spin == 0 || spin > self.lmax() {
            return Err(Error::InvalidArgument {
                name: "spin",
                message: format!(
                    "spin {spin} is not in 1..=lmax ({}); spin 0 is the scalar map2alm / alm2map",
                    self.lmax()
                ),
            });
        }
        Ok(())
    }

    /// The recursions of every order, built in parallel.
    fn spin_orders(&self, spin: usize) -> Vec<SpinOrder> {
        (0..=self.mmax())
            .into_par_iter()
            .map(|m| SpinOrder::new(m, spin, self.lmax()))
            .collect()
    }

    /// `cos θ` and `sin θ` of the northern rings of each group of `N` pairs
    /// of a chunk (padding lanes: `0` and `1`), and the largest order the
    /// group's rings take part in ([`order_limit`]).
    fn spin_groups<const N: usize>(
        &self,
        chunk_index: usize,
        spin: usize,
    ) -> Vec<(Lanes<N>, Lanes<N>, usize)> {
        let start = chunk_index * CHUNK;
        let end = (start + CHUNK).min(self.pairs.len());
        self.pairs[start..end]
            .chunks(N)
            .map(|group| {
                let mut cos = [0.0; N];
                let mut sin = [1.0; N];
                let mut limit = 0;
                for (lane, pair) in group.iter().enumerate() {
                    cos[lane] = pair.north.cos_theta;
                    sin[lane] = pair.north.sin_theta;
                    limit = limit.max(order_limit(self.lmax(), spin, &pair.north));
                }
                (cos, sin, limit)
            })
            .collect()
    }

    /// The gradient and curl coefficients `[E, B]` of a spin-`spin` map
    /// pair `[Q, U]`, as `healpy.map2alm_spin([q, u], spin, lmax, mmax)`
    /// (`iter = 0`); with `iter > 0`, refined by Jacobi steps as healpy's
    /// `map2alm([i, q, u], pol=True, iter=iter)` refines its E and B. Pixels
    /// equal to healpy's `UNSEEN` count as zero. Coefficients of `l < spin`
    /// are zero.
    ///
    /// ```
    /// use idx_flow_healpix::geometry::Ordering;
    /// use idx_flow_healpix::sht::{Alm, Complex64, SphericalTransform};
    ///
    /// let sht = SphericalTransform::new(16, 32, None)?;
    /// let mut e = Alm::zeros(32, 32)?;
    /// e.set(5, 3, Complex64::new(1.0, -0.5))?;
    /// let b = Alm::zeros(32, 32)?;
    /// let [q, u] = sht.alm2map_spin([&e, &b], 2, Ordering::Nested)?;
    /// let [e2, b2] = sht.map2alm_spin([&q, &u], 2, Ordering::Nested, 3)?;
    /// assert!((e2.get(5, 3).unwrap() - e.get(5, 3).unwrap()).norm() < 1e-6);
    /// assert!(b2.get(5, 3).unwrap().norm() < 1e-6);
    /// # Ok::<(), idx_flow_healpix::Error>(())
    /// ```
    pub fn map2alm_spin(
        &self,
        maps: [&[f64]; 2],
        spin: usize,
        ordering: Ordering,
        iter: usize,
    ) -> Result<[Alm; 2]> {
        let weight = 4.0 * std::f64::consts::PI / self.npix() as f64;
        let (rings, orders, mut alms) = self.first_spin_analysis(maps, spin, ordering, weight)?;
        let mut residual = [vec![0.0; rings[0].len()], vec![0.0; rings[0].len()]];
        for _ in 0..iter {
            let [res_q, res_u] = &mut residual;
            self.spin_synthesise(
                &orders,
                [alms[0].values(), alms[1].values()],
                [res_q, res_u],
            );
            for (res, ring) in residual.iter_mut().zip(&rings) {
                let ring: &[f64] = ring;
                res.par_iter_mut()
                    .zip(ring)
                    .for_each(|(r, &v)| *r = unseen_as_zero(v) - *r);
            }
            self.spin_analyse(&orders, [&residual[0], &residual[1]], weight, &mut alms);
        }
        Ok(alms)
    }

    /// The spin-`spin` map pair `[Q, U]` of gradient and curl coefficients
    /// `[E, B]`, as `healpy.alm2map_spin([e, b], nside, spin, lmax, mmax)`
    /// (coefficients of `l < spin` do not contribute).
    pub fn alm2map_spin(
        &self,
        alms: [&Alm; 2],
        spin: usize,
        ordering: Ordering,
    ) -> Result<[Vec<f64>; 2]> {
        self.check_spin(spin)?;
        self.check_alm(alms[0])?;
        self.check_alm(alms[1])?;
        let orders = self.spin_orders(spin);
        let mut q = vec![0.0; self.npix()];
        let mut u = vec![0.0; self.npix()];
        self.spin_synthesise(
            &orders,
            [alms[0].values(), alms[1].values()],
            [&mut q, &mut u],
        );
        Ok([
            self.reorder_from_ring(q, ordering)?,
            self.reorder_from_ring(u, ordering)?,
        ])
    }

    /// The adjoint of [`alm2map_spin`](Self::alm2map_spin) taken as a
    /// complex-linear map: [`map2alm_spin`](Self::map2alm_spin) with `iter = 0`
    /// and without the `4π/npix` weight. (With the real and imaginary parts of
    /// the `m > 0` coefficients as separate real inputs, the real adjoint of
    /// `alm2map_spin` is this doubled for `m > 0`, as for the scalar transform.)
    pub fn alm2map_spin_adjoint(
        &self,
        maps: [&[f64]; 2],
        spin: usize,
        ordering: Ordering,
    ) -> Result<[Alm; 2]> {
        let (_, _, alms) = self.first_spin_analysis(maps, spin, ordering, 1.0)?;
        Ok(alms)
    }

    /// What `map2alm_spin` and the adjoint share: the checks, the maps in
    /// RING order, the recursions of every order, and `weight ·` the
    /// analysis of the maps.
    #[allow(clippy::type_complexity)]
    fn first_spin_analysis<'a>(
        &self,
        maps: [&'a [f64]; 2],
        spin: usize,
        ordering: Ordering,
        weight: f64,
    ) -> Result<([Cow<'a, [f64]>; 2], Vec<SpinOrder>, [Alm; 2])> {
        self.check_spin(spin)?;
        let rings = [
            self.ring_map(maps[0], ordering)?,
            self.ring_map(maps[1], ordering)?,
        ];
        let orders = self.spin_orders(spin);
        let mut alms = [
            Alm::zeros(self.lmax(), self.mmax())?,
            Alm::zeros(self.lmax(), self.mmax())?,
        ];
        self.spin_analyse(&orders, [&rings[0], &rings[1]], weight, &mut alms);
        Ok((rings, orders, alms))
    }

    /// `healpy.map2alm([i, q, u], lmax, mmax, iter=iter, pol=True,
    /// use_weights=False)`: `[T, E, B]` of Stokes maps `[I, Q, U]`, T as
    /// [`map2alm`](Self::map2alm) and E, B as [`map2alm_spin`](Self::map2alm_spin) of spin 2.
    pub fn map2alm_pol(
        &self,
        maps: [&[f64]; 3],
        ordering: Ordering,
        iter: usize,
    ) -> Result<[Alm; 3]> {
        let [e, b] = self.map2alm_spin([maps[1], maps[2]], 2, ordering, iter)?;
        Ok([self.map2alm(maps[0], ordering, iter)?, e, b])
    }

    /// `healpy.alm2map([t, e, b], nside, pol=True)`: the Stokes maps `[I, Q, U]`.
    pub fn alm2map_pol(&self, alms: [&Alm; 3], ordering: Ordering) -> Result<[Vec<f64>; 3]> {
        let [q, u] = self.alm2map_spin([alms[1], alms[2]], 2, ordering)?;
        Ok([self.alm2map(alms[0], ordering)?, q, u])
    }

    /// `[E, B] += weight · (the spin analysis of the RING maps [Q, U])`.
    fn spin_analyse(
        &self,
        orders: &[SpinOrder],
        rings: [&[f64]; 2],
        weight: f64,
        alms: &mut [Alm; 2],
    ) {
        let (lmax, mmax) = (self.lmax(), self.mmax());
        let [e, b] = alms;
        let mut e_by_order = Alm::split_by_order(e.values_mut(), lmax, mmax);
        let mut b_by_order = Alm::split_by_order(b.values_mut(), lmax, mmax);
        const N: usize = ANALYSIS_LANES;
        let groups_per_chunk = CHUNK / N;
        let mut phases = vec![SpinPhases::<N>::default(); (mmax + 1) * groups_per_chunk];
        for (chunk_index, chunk) in self.pairs.chunks(CHUNK).enumerate() {
            // Each ring's phases of Q and U: [north Q, north U, south Q, south U].
            let ring_phases: Vec<[Vec<Complex64>; 4]> = chunk
                .par_iter()
                .map_init(FftScratch::default, |scratch, pair| {
                    let mut analyse = |ring: Option<&Ring>, map: &[f64]| {
                        let mut out = vec![Complex64::default(); mmax + 1];
                        if let Some(ring) = ring {
                            let values = &map[ring.start..ring.start + ring.len];
                            self.ffts
                                .analyse(values, ring.phi0, weight, &mut out, scratch);
                        }
                        out
                    };
                    [
                        analyse(Some(&pair.north), rings[0]),
                        analyse(Some(&pair.north), rings[1]),
                        analyse(pair.south.as_ref(), rings[0]),
                        analyse(pair.south.as_ref(), rings[1]),
                    ]
                })
                .collect();
            // Regrouped by order, one order per task (see `analyse`).
            phases
                .par_chunks_mut(groups_per_chunk)
                .enumerate()
                .for_each(|(m, phases_m)| {
                    phases_m.fill(SpinPhases::default());
                    for (p, [qn, un, qs, us]) in ring_phases.iter().enumerate() {
                        let target = &mut phases_m[p / N];
                        let lane = p % N;
                        let (q_sym, q_anti) = (qn[m] + qs[m], qn[m] - qs[m]);
                        let (u_sym, u_anti) = (un[m] + us[m], un[m] - us[m]);
                        for (slot, value) in [
                            (&mut target.q_sym, q_sym),
                            (&mut target.q_anti, q_anti),
                            (&mut target.u_sym, u_sym),
                            (&mut target.u_anti, u_anti),
                        ] {
                            slot[0][lane] = value.re;
                            slot[1][lane] = value.im;
                        }
                    }
                });
            let groups = self.spin_groups::<N>(chunk_index, orders[0].spin);
            e_by_order
                .par_iter_mut()
                .zip(b_by_order.par_iter_mut())
                .enumerate()
                .for_each_init(Vec::new, |partial, (m, (e_m, b_m))| {
                    let order = &orders[m];
                    if order.l0 > lmax {
                        return;
                    }
                    partial.clear();
                    partial.resize(lmax + 1 - m, LaneSums::ZERO);
                    for (g, (cos, sin, limit)) in groups.iter().enumerate() {
                        if m > *limit {
                            continue;
                        }
                        let mut acc = SpinAnalysis {
                            phases: &phases[m * groups_per_chunk + g],
                            partial,
                            m,
                        };
                        spin_recurse(order, lmax, cos, sin, &mut acc);
                    }
                    reduce_spin_partial(partial, e_m, b_m);
                });
        }
    }

    /// `[Q, U]` (RING, overwritten) from `[E, B]`.
    fn spin_synthesise(
        &self,
        orders: &[SpinOrder],
        alms: [&[Complex64]; 2],
        rings: [&mut [f64]; 2],
    ) {
        let (lmax, mmax) = (self.lmax(), self.mmax());
        const N: usize = SYNTHESIS_LANES;
        let groups_per_chunk = CHUNK / N;
        let mut phases = vec![SpinPhases::<N>::default(); (mmax + 1) * groups_per_chunk];
        let [q_map, u_map] = rings;
        let mut q_slots = ring_slots(q_map, &self.pairs);
        let mut u_slots = ring_slots(u_map, &self.pairs);
        for (chunk_index, chunk) in self.pairs.chunks(CHUNK).enumerate() {
            let groups = self.spin_groups::<N>(chunk_index, orders[0].spin);
            phases
                .par_chunks_mut(groups_per_chunk)
                .enumerate()
                .for_each(|(m, phases_m)| {
                    let order = &orders[m];
                    let range = Alm::order_range(lmax, m);
                    for (g, (cos, sin, limit)) in groups.iter().enumerate() {
                        let mut acc = SpinSynthesis {
                            e: &alms[0][range.clone()],
                            b: &alms[1][range.clone()],
                            m,
                            phases: SpinPhases::default(),
                        };
                        if m <= *limit {
                            spin_recurse(order, lmax, cos, sin, &mut acc);
                        }
                        phases_m[g] = acc.phases;
                    }
                });
            // Each ring's values of Q and U, north then south. A task takes
            // one group: it reads every order's block of the group whole and
            // in order into per-ring phase rows, then runs the rings' FFTs
            // straight into the maps (see the scalar `synthesise`).
            let first_pair = chunk_index * CHUNK;
            let span = first_pair..first_pair + chunk.len();
            chunk
                .par_chunks(N)
                .zip(q_slots[span.clone()].par_chunks_mut(N))
                .zip(u_slots[span].par_chunks_mut(N))
                .enumerate()
                .for_each_init(
                    || (FftScratch::default(), Vec::new()),
                    |(scratch, rows), (group, ((pairs, q_out), u_out))| {
                        // rows[k] = [north Q, north U, south Q, south U] phases of pair k.
                        rows.resize_with(pairs.len(), <[Vec<Complex64>; 4]>::default);
                        for row in rows.iter_mut().flatten() {
                            row.clear();
                        }
                        for m in 0..=mmax {
                            let ph = &phases[m * groups_per_chunk + group];
                            for (lane, row) in rows.iter_mut().enumerate() {
                                let value = |parts: &[Lanes<N>; 2]| {
                                    Complex64::new(parts[0][lane], parts[1][lane])
                                };
                                let (q_sym, q_anti) = (value(&ph.q_sym), value(&ph.q_anti));
                                let (u_sym, u_anti) = (value(&ph.u_sym), value(&ph.u_anti));
                                row[0].push(q_sym + q_anti);
                                row[1].push(u_sym + u_anti);
                                row[2].push(q_sym - q_anti);
                                row[3].push(u_sym - u_anti);
                            }
                        }
                        let outs = q_out.iter_mut().zip(u_out.iter_mut());
                        for ((pair, [qn, un, qs, us]), ((qn_out, qs_out), (un_out, us_out))) in
                            pairs.iter().zip(rows.iter()).zip(outs)
                        {
                            let phi0 = pair.north.phi0;
                            self.ffts.synthesise(qn, phi0, qn_out, scratch);
                            self.ffts.synthesise(un, phi0, un_out, scratch);
                            if let (Some(ring), Some(q), Some(u)) = (&pair.south, qs_out, us_out) {
                                self.ffts.synthesise(qs, ring.phi0, q, scratch);
                                self.ffts.synthesise(us, ring.phi0, u, scratch);
                            }
                        }
                    },
                );
        }
    }
}
