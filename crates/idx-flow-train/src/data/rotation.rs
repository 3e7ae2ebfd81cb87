//! Rotations of the sphere: uniformly random ones (Haar measure), applied to
//! unit vectors.
//!
//! ```
//! use idx_flow_core::rng::SplitMix64;
//! use idx_flow_train::data::Rotation;
//! let r = Rotation::random(&mut SplitMix64::new(1));
//! let v = r.apply([0.0, 0.0, 1.0]);
//! let back = r.apply_inverse(v);
//! assert!((back[2] - 1.0).abs() < 1e-12);
//! ```

use idx_flow_core::rng::SplitMix64;

/// A rotation matrix `R` (row-major, orthonormal, det +1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rotation {
    /// The matrix, `m[row][column]`.
    pub m: [[f64; 3]; 3],
}

impl Rotation {
    /// The identity.
    pub const IDENTITY: Rotation = Rotation {
        m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };

    /// A uniformly distributed rotation (Shoemake's uniform unit quaternion from three uniforms).
    pub fn random(rng: &mut SplitMix64) -> Self {
        let (u1, u2, u3) = (rng.uniform(), rng.uniform(), rng.uniform());
        let tau = std::f64::consts::TAU;
        let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
        let q = [
            a * (tau * u2).sin(),
            a * (tau * u2).cos(),
            b * (tau * u3).sin(),
            b * (tau * u3).cos(),
        ];
        Self::from_quaternion(q)
    }

    /// The rotation of the unit quaternion `[x, y, z, w]` (normalised here).
    pub fn from_quaternion(q: [f64; 4]) -> Self {
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        let [x, y, z, w] = q.map(|v| v / n);
        Rotation {
            m: [
                [
                    1.0 - 2.0 * (y * y + z * z),
                    2.0 * (x * y - z * w),
                    2.0 * (x * z + y * w),
                ],
                [
                    2.0 * (x * y + z * w),
                    1.0 - 2.0 * (x * x + z * z),
                    2.0 * (y * z - x * w),
                ],
                [
                    2.0 * (x * z - y * w),
                    2.0 * (y * z + x * w),
                    1.0 - 2.0 * (x * x + y * y),
                ],
            ],
        }
    }

    /// `R·v`.
    pub fn apply(&self, v: [f64; 3]) -> [f64; 3] {
        let m = &self.m;
        [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
    }

    /// `Rᵀ·v = R⁻¹·v`.
    pub fn apply_inverse(&self, v: [f64; 3]) -> [f64; 3] {
        let m = &self.m;
        [0, 1, 2].map(|i| m[0][i] * v[0] + m[1][i] * v[1] + m[2][i] * v[2])
    }
}
