//! The reverse of a connection graph: which edges read each input pixel.

use crate::check::{GatherError, GatherSizes, check_range};

/// The reverse of a connection graph, in compressed rows: the edges that read
/// input pixel `i` are `edges[offsets[i]..offsets[i + 1]]`, each the flat
/// position `p·k + j` of the edge in the `[N_out, k]` index list, ordered by
/// kernel slot `j`, then by output pixel `p`. Grouping by slot lets an input
/// gradient kernel walk a pixel's edges once while it steps through the
/// kernel slot by slot (the GPU input gradient is a matrix product whose
/// reduction runs over `(j, f)`).
/// The input gradient of a gather is a gather through these lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseGraph {
    /// `[N_in + 1]`, starting at 0 and ending at `N_out·k`.
    pub offsets: Vec<i64>,
    /// `[N_out·k]` flat edge positions grouped by input pixel.
    pub edges: Vec<i64>,
}

impl ReverseGraph {
    /// The reverse of a row-major `[n_out, k]` index list (`k` entries per
    /// row) whose entries lie in `0..n_in`. A counting sort: O(N_out·k).
    ///
    /// # Errors
    /// An entry outside `0..n_in`, or a list whose length is not a multiple
    /// of `k`.
    pub fn checked(indices: &[i64], n_in: usize, k: usize) -> Result<Self, GatherError> {
        let n_out = indices.len().checked_div(k).unwrap_or(0);
        let sizes = GatherSizes {
            batch: 1,
            n_in,
            channels: 1,
            n_out,
            k,
        };
        if k == 0 && !indices.is_empty() {
            return Err(GatherError::Length {
                what: "indices",
                got: indices.len(),
                expected: 0,
                shape: "[N_out, k] with k = 0".into(),
            });
        }
        sizes.expect_len("indices", indices, &[n_out, k], "[N_out, k]")?;
        check_range("indices", indices, n_in)?;
        Ok(Self::new(indices, n_in, k))
    }

    /// [`checked`](Self::checked) for an index list already known to be
    /// valid (a graph built by this library, or checked before).
    ///
    /// # Panics
    /// On an entry outside `0..n_in`.
    pub fn new(indices: &[i64], n_in: usize, k: usize) -> Self {
        let mut offsets = vec![0i64; n_in + 1];
        for &i in indices {
            offsets[i as usize + 1] += 1;
        }
        for i in 0..n_in {
            offsets[i + 1] += offsets[i];
        }
        let mut next: Vec<i64> = offsets[..n_in].to_vec();
        let mut edges = vec![0i64; indices.len()];
        let n_out = indices.len().checked_div(k).unwrap_or(0);
        // Slot-major visiting order, so each pixel's list comes out ordered by
        // (j, p).
        for j in 0..k {
            for p in 0..n_out {
                let e = p * k + j;
                let pos = &mut next[indices[e] as usize];
                edges[*pos as usize] = e as i64;
                *pos += 1;
            }
        }
        Self { offsets, edges }
    }

    /// The reverse graph by kernel slot, packed into one list for the GPU
    /// input gradient: for each slot `j`, the input pixels that slot reads
    /// (ascending) and where each pixel's slot-`j` edges begin in
    /// [`edges`](Self::edges). Layout, with `T` the number of (slot, pixel)
    /// pairs: `[o_0 … o_k | pixels (T) | starts (T)]`, slot `j` owning
    /// entries `o_j..o_{j+1}` of the last two parts. Every pixel appears at
    /// most once per slot, so a pass over one slot writes each pixel once.
    pub fn slot_rows(&self, k: usize) -> Vec<i64> {
        let n_in = self.offsets.len().saturating_sub(1);
        let mut lists: Vec<Vec<(i64, i64)>> = vec![Vec::new(); k];
        for i in 0..n_in {
            let (begin, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
            let mut last = usize::MAX;
            for q in begin..end {
                let j = self.edges[q] as usize % k;
                if j != last {
                    lists[j].push((i as i64, q as i64));
                    last = j;
                }
            }
        }
        let total: usize = lists.iter().map(Vec::len).sum();
        let mut packed = Vec::with_capacity(k + 1 + 2 * total);
        packed.push(0);
        for list in &lists {
            packed.push(packed.last().copied().unwrap_or(0) + list.len() as i64);
        }
        packed.extend(lists.iter().flatten().map(|&(i, _)| i));
        packed.extend(lists.iter().flatten().map(|&(_, q)| q));
        packed
    }
}
