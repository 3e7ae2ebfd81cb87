//! The sizes of a gather, and the checks every kernel runs on its slices
//! before it touches them.

use rayon::prelude::*;

/// What does not fit in a gather's arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatherError {
    /// A slice whose length does not match the sizes.
    #[error("{what} holds {got} values, expected {expected} ({shape})")]
    Length {
        /// The argument.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length the sizes call for.
        expected: usize,
        /// The shape the sizes call for, in words.
        shape: String,
    },
    /// A graph entry outside its range.
    #[error("{what}[{position}] is {value}, expected a value in 0..{bound}")]
    OutOfRange {
        /// The argument.
        what: &'static str,
        /// The flat position of the entry.
        position: usize,
        /// The entry.
        value: i64,
        /// One past the largest allowed value.
        bound: usize,
    },
    /// Reverse-graph offsets that do not start at 0, fall, or do not end at the
    /// number of edges.
    #[error(
        "reverse-graph offsets are not a valid row index: {0} (expected [N_in + 1] values rising from 0 to the number of edges)"
    )]
    Offsets(String),
    /// Sizes whose product overflows the address space.
    #[error("the sizes {0} are too large to address")]
    TooLarge(String),
}

/// The sizes of a gather: input `[batch, n_in, channels]`, graph `[n_out, k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatherSizes {
    /// `B`.
    pub batch: usize,
    /// Input pixels `N_in`.
    pub n_in: usize,
    /// Input channels `C`.
    pub channels: usize,
    /// Output pixels `N_out`.
    pub n_out: usize,
    /// Neighbours per output pixel `k`.
    pub k: usize,
}

/// `a·b·…` or an error naming the sizes.
pub(crate) fn product(factors: &[usize], sizes: &GatherSizes) -> Result<usize, GatherError> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| GatherError::TooLarge(format!("{sizes:?}")))
}

impl GatherSizes {
    /// `slice.len() == product(dims)`, or an error naming `what` and `shape`.
    pub(crate) fn expect_len<T>(
        &self,
        what: &'static str,
        slice: &[T],
        dims: &[usize],
        shape: &str,
    ) -> Result<(), GatherError> {
        let expected = product(dims, self)?;
        if slice.len() == expected {
            Ok(())
        } else {
            Err(GatherError::Length {
                what,
                got: slice.len(),
                expected,
                shape: format!("{shape} = {dims:?}"),
            })
        }
    }

    /// The `[N_out, k]` graph: its length and every entry in `0..N_in`.
    pub(crate) fn check_indices(&self, indices: &[i64]) -> Result<(), GatherError> {
        self.expect_len("indices", indices, &[self.n_out, self.k], "[N_out, k]")?;
        check_range("indices", indices, self.n_in)
    }

    /// The optional `[N_out, k]` edge weights.
    pub(crate) fn check_weights(&self, weights: Option<&[f32]>) -> Result<(), GatherError> {
        match weights {
            Some(w) => self.expect_len("edge weights", w, &[self.n_out, self.k], "[N_out, k]"),
            None => Ok(()),
        }
    }

    /// A reverse graph of this graph's form: `[N_in + 1]` offsets rising
    /// from 0 to the number of edges, `[N_out·k]` edges in `0..N_out·k`.
    pub(crate) fn check_reverse(&self, offsets: &[i64], edges: &[i64]) -> Result<(), GatherError> {
        let n_in_1 = self
            .n_in
            .checked_add(1)
            .ok_or_else(|| GatherError::TooLarge(format!("{self:?}")))?;
        self.expect_len("reverse-graph offsets", offsets, &[n_in_1], "[N_in + 1]")?;
        let n_edges = product(&[self.n_out, self.k], self)?;
        self.expect_len(
            "reverse-graph edges",
            edges,
            &[self.n_out, self.k],
            "[N_out·k]",
        )?;
        if offsets[0] != 0 {
            return Err(GatherError::Offsets(format!("the first is {}", offsets[0])));
        }
        if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(GatherError::Offsets(format!(
                "offsets[{}] = {} is less than offsets[{i}] = {}",
                i + 1,
                offsets[i + 1],
                offsets[i]
            )));
        }
        let last = offsets[self.n_in];
        if usize::try_from(last).ok() != Some(n_edges) {
            return Err(GatherError::Offsets(format!(
                "the last is {last}, but there are {n_edges} edges"
            )));
        }
        check_range("reverse-graph edges", edges, n_edges)
    }
}

/// Every entry of `values` in `0..bound` (checked in parallel chunks; the
/// first offending position is reported).
pub(crate) fn check_range(
    what: &'static str,
    values: &[i64],
    bound: usize,
) -> Result<(), GatherError> {
    const CHUNK: usize = 1 << 16;
    let bad = values
        .par_chunks(CHUNK)
        .enumerate()
        .find_first(|(_, chunk)| chunk.iter().any(|&v| v < 0 || v as u64 >= bound as u64));
    match bad {
        None => Ok(()),
        Some((c, chunk)) => {
            let off = chunk
                .iter()
                .position(|&v| v < 0 || v as u64 >= bound as u64)
                .unwrap_or(0);
            Err(GatherError::OutOfRange {
                what,
                position: c * CHUNK + off,
                value: chunk[off],
                bound,
            })
        }
    }
}
