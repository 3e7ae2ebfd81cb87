//! The transform for any `N` (the paired rows of [`super::paired`] need an
//! even one): a real FFT of each row (`realfft`, keeping the `W/2 + 1`
//! columns a real row's spectrum does not repeat), written transposed so
//! that each kept column is contiguous; a complex FFT of length `N` down
//! each kept column; then the real parts written back row by row, the
//! columns above `W/2` mirrored (`Re X[s, h] = Re X[−s, −h]` for real `x`).

use std::sync::{Arc, Mutex, OnceLock};

use realfft::{RealFftPlanner, RealToComplex};
use rustfft::Fft;
use rustfft::num_complex::Complex32;

use super::Passes;
use crate::fft::plan;

/// Rows of one sample per block: a block's output (`ROWS_PER_BLOCK × W`
/// values) stays in the first-level cache while its columns are written.
const ROWS_PER_BLOCK: usize = 16;

/// `realfft`'s forward plan for rows of `w`, from one process-wide planner.
fn real_plan(w: usize) -> Arc<dyn RealToComplex<f32>> {
    static PLANNER: OnceLock<Mutex<RealFftPlanner<f32>>> = OnceLock::new();
    PLANNER
        .get_or_init(|| Mutex::new(RealFftPlanner::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .plan_fft_forward(w)
}

/// The sizes of one call and the plans they use.
pub(super) struct General {
    n: usize,
    w: usize,
    /// Kept columns of a real row's spectrum, `w/2 + 1`.
    half: usize,
    /// `1/√(n·w)`.
    scale: f32,
    row_fft: Arc<dyn RealToComplex<f32>>,
    column_fft: Arc<dyn Fft<f32>>,
}

/// One thread's working buffers.
pub(super) struct Buffers {
    row: Vec<f32>,
    rows_spectrum: Vec<Complex32>,
    row_scratch: Vec<Complex32>,
    /// One block of output rows, `ROWS_PER_BLOCK × w`.
    tile: Vec<f32>,
}

impl General {
    pub(super) fn new(n: usize, w: usize) -> Self {
        Self {
            n,
            w,
            half: w / 2 + 1,
            scale: (1.0 / ((n * w) as f64).sqrt()) as f32,
            row_fft: real_plan(w),
            column_fft: plan(n, false),
        }
    }
}

impl Passes for General {
    type Buffers = Buffers;

    fn buffers(&self) -> Buffers {
        Buffers {
            row: self.row_fft.make_input_vec(),
            rows_spectrum: vec![Complex32::new(0.0, 0.0); ROWS_PER_BLOCK * self.half],
            row_scratch: self.row_fft.make_scratch_vec(),
            tile: Vec::with_capacity(ROWS_PER_BLOCK * self.w),
        }
    }

    fn spectrum_len(&self) -> usize {
        self.half * self.n
    }

    fn column_fft(&self) -> &dyn Fft<f32> {
        &*self.column_fft
    }

    fn row_blocks(&self) -> usize {
        self.n.div_ceil(ROWS_PER_BLOCK)
    }

    fn output_blocks(&self) -> usize {
        self.n.div_ceil(ROWS_PER_BLOCK)
    }

    /// The real FFTs of one block of rows, written transposed into the
    /// sample's spectrum (column `h` at `spectrum[h·n..][..n]`).
    unsafe fn rows(
        &self,
        x: &[f32],
        block: usize,
        spectrum: *mut Complex32,
        buffers: &mut Buffers,
    ) {
        let (n, w, half) = (self.n, self.w, self.half);
        let s0 = block * ROWS_PER_BLOCK;
        let rows = ROWS_PER_BLOCK.min(n - s0);
        for r in 0..rows {
            let at = (s0 + r) * w;
            buffers.row.copy_from_slice(&x[at..at + w]);
            self.row_fft
                .process_with_scratch(
                    &mut buffers.row,
                    &mut buffers.rows_spectrum[r * half..(r + 1) * half],
                    &mut buffers.row_scratch,
                )
                .expect("buffers sized by the plan");
        }
        for h in 0..half {
            for r in 0..rows {
                // SAFETY: inside the sample's spectrum, at this block's rows.
                unsafe {
                    spectrum
                        .add(h * n + s0 + r)
                        .write(buffers.rows_spectrum[r * half + h])
                };
            }
        }
    }

    /// The real parts of one block of rows of the transformed spectrum,
    /// scaled; the columns above `w/2` from the mirrored position `(−s, −h)`.
    unsafe fn output(
        &self,
        spectrum: &[Complex32],
        block: usize,
        out: *mut f32,
        buffers: &mut Buffers,
    ) {
        let (n, w, half, scale) = (self.n, self.w, self.half, self.scale);
        let s0 = block * ROWS_PER_BLOCK;
        let rows = ROWS_PER_BLOCK.min(n - s0);
        let mut mirrors = [0usize; ROWS_PER_BLOCK];
        for (r, m) in mirrors.iter_mut().enumerate().take(rows) {
            *m = (n - (s0 + r)) % n;
        }
        // The block is assembled in `tile` (in the first-level cache) and
        // then copied out row by row: written straight into `out`, each
        // value lands on another row's cache line, and this pass took a
        // fifth longer (perf cycle counts of bench/families' FourierMixing
        // case, 2-core Intel box).
        // Every value is written below: resizing zeroes only what grows
        // (the first block a thread takes), not every block.
        let tile = &mut buffers.tile;
        tile.resize(rows * w, 0.0);
        for h in 0..half {
            let column = &spectrum[h * n..][..n];
            for r in 0..rows {
                tile[r * w + h] = column[s0 + r].re * scale;
            }
        }
        for h in half..w {
            let column = &spectrum[(w - h) * n..][..n];
            for (r, &m) in mirrors.iter().enumerate().take(rows) {
                tile[r * w + h] = column[m].re * scale;
            }
        }
        // SAFETY: inside `out`, at this block's rows.
        unsafe { std::ptr::copy_nonoverlapping(tile.as_ptr(), out.add(s0 * w), rows * w) };
    }
}
