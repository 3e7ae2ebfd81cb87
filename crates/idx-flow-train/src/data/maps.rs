//! HEALPix maps in memory, `[T, C, N]`, and the checks every loader
//! ([`files`](super::files), [`fits`](super::fits)) applies to them.
//!
//! Every loader checks what a training run relies on and says what it expected:
//! a length of `12·nside²`, the channel count, no infinities. Masked pixels
//! (healpy's `UNSEEN`, NaN) are kept as they are: [`mask`](super::mask) says
//! which they are.
//!
//! ```
//! use idx_flow_train::data::HealpixMaps;
//! use idx_flow_healpix::geometry::Ordering;
//! // Two channels on nside 1 (12 pixels), one sample.
//! let maps = HealpixMaps::new(Ordering::Ring, 1, 2, (0..24).map(|v| v as f32).collect())?;
//! assert_eq!((maps.nside(), maps.samples(), maps.channels()), (1, 1, 2));
//! assert_eq!(maps.map(0, 1)[0], 12.0);
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use crate::{Error, Result};
use idx_flow_healpix::geometry::{HealpixGrid, Ordering, npix2nside};

pub use super::mask::UNSEEN;

/// `T` samples of `C`-channel maps on one HEALPix grid, `[T, C, N]`.
#[derive(Clone, Debug)]
pub struct HealpixMaps {
    grid: HealpixGrid,
    channels: usize,
    samples: usize,
    data: Vec<f32>,
}

/// The nside of a map of `n` pixels, or an error saying what lengths are valid.
pub fn nside_of_length(n: usize, what: &str) -> Result<u32> {
    npix2nside(n as u64).ok_or_else(|| {
        let below = ((n as f64 / 12.0).sqrt().floor() as u64).max(1);
        Error::arg(
            "map",
            format!(
                "{what} has {n} pixels, which is not 12·nside² for any nside \
                 (nearest: nside {below} has {}, nside {} has {})",
                12 * below * below,
                below + 1,
                12 * (below + 1) * (below + 1)
            ),
        )
    })
}

impl HealpixMaps {
    /// Maps from `[T, C, N]` values (`T = data.len() / (C·N)`), `N = 12·nside²`;
    /// an infinite value is an error.
    pub fn new(ordering: Ordering, nside: u32, channels: usize, data: Vec<f32>) -> Result<Self> {
        let grid = HealpixGrid::new(nside, ordering)?;
        let n = grid.npix() as usize;
        if channels == 0 || data.is_empty() || !data.len().is_multiple_of(channels * n) {
            return Err(Error::Shape {
                context: "HEALPix maps".into(),
                expected: format!("[T, {channels}, {n}] values (nside {nside})"),
                got: format!("{} values", data.len()),
            });
        }
        if let Some(i) = data.iter().position(|v| v.is_infinite()) {
            let (t, c, p) = (i / (channels * n), (i / n) % channels, i % n);
            return Err(Error::arg(
                "map",
                format!(
                    "sample {t}, channel {c}, pixel {p} is {}, expected a finite value, UNSEEN or NaN (masked)",
                    data[i]
                ),
            ));
        }
        Ok(Self {
            grid,
            channels,
            samples: data.len() / (channels * n),
            data,
        })
    }

    /// The grid.
    pub fn grid(&self) -> HealpixGrid {
        self.grid
    }

    /// nside.
    pub fn nside(&self) -> u32 {
        self.grid.nside()
    }

    /// Channels `C`.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Samples `T`.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Channel `c` of sample `t`, `[N]` in the maps' ordering.
    pub fn map(&self, t: usize, c: usize) -> &[f32] {
        let n = self.grid.npix() as usize;
        let start = (t * self.channels + c) * n;
        &self.data[start..start + n]
    }

    /// All values, `[T, C, N]`.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}
