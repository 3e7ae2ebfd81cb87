//! The hyperoctahedral group `B_D` (the rotations and reflections of the
//! `D`-cube: signed permutation matrices, 8 in 2-D and 48 in 3-D) and its
//! action on geometric images:
//!
//! `(g·A)(x) = det(g)^p · g^{⊗k} A(g⁻¹ x)`,
//!
//! with `x` measured from the centre of the grid, so that `g` moves a cell
//! `i` of an axis of length `N` to `N − 1 − i` where it flips that axis.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_equivariant::{hyperoctahedral_group, MultiImage, TensorKey};
//!
//! let device = Device::default();
//! let group = hyperoctahedral_group(2)?;
//! assert_eq!(group.len(), 8);
//! // A vector field that is (1, 0) at the cell (0, 0) of a 3×3 grid ...
//! let mut v = vec![0f32; 2 * 9];
//! v[0] = 1.0;
//! let x = MultiImage::<4>::new(vec![false, false])?
//!     .with(TensorKey::VECTOR, Tensor::from_data(TensorData::new(v, [1, 2, 3, 3]), &device))?;
//! // ... rotated by 90° (g = [[0, −1], [1, 0]]) is (0, 1) at the cell (2, 0).
//! let g = group.iter().find(|g| g.matrix() == vec![0, -1, 1, 0]).unwrap();
//! let y = g.apply(&x)?.pixel_layout(TensorKey::VECTOR).unwrap().0;
//! assert_eq!((y[2 * 3 * 2], y[2 * 3 * 2 + 1]), (0.0, 1.0));
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use burn::tensor::{Int, Tensor, TensorData};

use super::image::{MultiImage, TensorKey, check_d};
use crate::{Error, Result};

/// One element of `B_D`: a signed permutation matrix, stored by rows (row `i`
/// has its one non-zero entry `sign[i]` in column `col[i]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupElement {
    col: Vec<usize>,
    sign: Vec<i8>,
}

impl GroupElement {
    /// The element of the `D×D` matrix `m` (row-major), which must be a signed
    /// permutation matrix.
    pub fn from_matrix(m: &[i32], d: usize) -> Result<Self> {
        let bad = || {
            Error::arg(
                "group element",
                format!("{m:?} is not a {d}×{d} signed permutation matrix"),
            )
        };
        if m.len() != d * d {
            return Err(bad());
        }
        let mut col = Vec::with_capacity(d);
        let mut sign = Vec::with_capacity(d);
        let mut used = vec![false; d];
        for i in 0..d {
            let row = &m[i * d..(i + 1) * d];
            let nz: Vec<usize> = (0..d).filter(|&j| row[j] != 0).collect();
            if nz.len() != 1 || row[nz[0]].abs() != 1 || used[nz[0]] {
                return Err(bad());
            }
            used[nz[0]] = true;
            col.push(nz[0]);
            sign.push(row[nz[0]] as i8);
        }
        Ok(GroupElement { col, sign })
    }

    /// The identity of `B_D`.
    pub fn identity(d: usize) -> Self {
        GroupElement {
            col: (0..d).collect(),
            sign: vec![1; d],
        }
    }

    /// Dimension `D`.
    pub fn dim(&self) -> usize {
        self.col.len()
    }

    /// The matrix, row-major.
    pub fn matrix(&self) -> Vec<i32> {
        let d = self.dim();
        let mut m = vec![0; d * d];
        for i in 0..d {
            m[i * d + self.col[i]] = self.sign[i] as i32;
        }
        m
    }

    /// The row of the non-zero entry of column `j`, and that entry.
    fn row_of_col(&self, j: usize) -> (usize, i8) {
        let i = self.col.iter().position(|&c| c == j).unwrap_or(j);
        (i, self.sign[i])
    }

    /// The determinant, ±1.
    pub fn det(&self) -> i8 {
        let d = self.dim();
        // Sign of the permutation by counting inversions.
        let mut inv = 0;
        for a in 0..d {
            for b in a + 1..d {
                if self.col[a] > self.col[b] {
                    inv += 1;
                }
            }
        }
        let perm = if inv % 2 == 0 { 1 } else { -1 };
        perm * self.sign.iter().product::<i8>()
    }

    /// The inverse (the transpose).
    pub fn inverse(&self) -> Self {
        let d = self.dim();
        let mut col = vec![0; d];
        let mut sign = vec![1; d];
        for i in 0..d {
            col[self.col[i]] = i;
            sign[self.col[i]] = self.sign[i];
        }
        GroupElement { col, sign }
    }

    /// The product `self · other`.
    pub fn compose(&self, other: &GroupElement) -> Self {
        let d = self.dim();
        let (col, sign) = (0..d)
            .map(|i| {
                let j = self.col[i];
                (other.col[j], self.sign[i] * other.sign[j])
            })
            .unzip();
        GroupElement { col, sign }
    }

    /// How `g` acts on the `D^k` components of a `(k, p)` tensor: component
    /// `j` of `g·A` is `sign[j] · A[source[j]]` (components row-major).
    pub fn component_action(&self, key: TensorKey) -> (Vec<usize>, Vec<f32>) {
        let d = self.dim();
        let n = key.components(d);
        let flip = if key.parity % 2 == 1 { self.det() } else { 1 };
        let mut source = Vec::with_capacity(n);
        let mut sign = Vec::with_capacity(n);
        for j in 0..n {
            // (g^{⊗k} A)_{j1..jk} = Π g[j_m, col(j_m)] · A_{col(j_1)..col(j_k)}.
            let (mut rest, mut src, mut s, mut place) = (j, 0, flip, 1);
            for _ in 0..key.k {
                let jm = rest % d;
                rest /= d;
                src += self.col[jm] * place;
                s *= self.sign[jm];
                place *= d;
            }
            source.push(src);
            sign.push(s as f32);
        }
        (source, sign)
    }

    /// Where the cell `y` of a grid `n` goes: `g y` about the centre. The
    /// result lies in the grid `n` with its axes permuted ([`Self::grid`]).
    pub fn move_cell(&self, y: &[usize], n: &[usize]) -> Vec<usize> {
        (0..self.dim())
            .map(|r| {
                let c = self.col[r];
                if self.sign[r] > 0 {
                    y[c]
                } else {
                    n[c] - 1 - y[c]
                }
            })
            .collect()
    }

    /// The grid of `g·A` for `A` on grid `n` (axes permuted like the coordinates).
    pub fn grid(&self, n: &[usize]) -> Vec<usize> {
        self.col.iter().map(|&c| n[c]).collect()
    }

    /// `g·A` of one block `[B, C·D^k, *N]` of `key`.
    pub fn apply_block<const R: usize>(&self, key: TensorKey, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.dim();
        if R != d + 2 {
            return Err(Error::Shape {
                context: "GroupElement::apply_block".into(),
                expected: format!("a rank {} block for a {d}-D group element", d + 2),
                got: format!("rank {R}"),
            });
        }
        let comps = key.components(d);
        let dims = x.dims();
        if !dims[1].is_multiple_of(comps) {
            return Err(Error::Shape {
                context: format!("GroupElement::apply_block {key}"),
                expected: format!("[B, C·{comps}, *N]"),
                got: format!("{dims:?}"),
            });
        }
        // (g·A)(x) = A(gᵀx): input axis j is read at ±x_{row(j)}; flip the
        // axes with a minus sign, then bring input axis col(r) to place r.
        let mut x = x;
        for j in 0..d {
            if self.row_of_col(j).1 < 0 {
                x = x.flip([2 + j]);
            }
        }
        let mut axes = [0usize; R];
        for (a, slot) in axes.iter_mut().enumerate() {
            *slot = if a < 2 { a } else { 2 + self.col[a - 2] };
        }
        let x = x.permute(axes);
        if key.k == 0 && key.parity == 0 {
            return Ok(x);
        }
        let out_dims = x.dims();
        let cells: usize = out_dims[2..].iter().product();
        let (source, sign) = self.component_action(key);
        let device = x.device();
        let x4: Tensor<4> = x.reshape([dims[0], dims[1] / comps, comps, cells]);
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(
                source.iter().map(|&s| s as i64).collect::<Vec<_>>(),
                [comps],
            ),
            &device,
        );
        let sign = Tensor::<4>::from_data(TensorData::new(sign, [1, 1, comps, 1]), &device);
        Ok((x4.select(2, idx) * sign).reshape(out_dims))
    }

    /// `g·A` of every block; the torus flags follow the axes.
    pub fn apply<const R: usize>(&self, x: &MultiImage<R>) -> Result<MultiImage<R>> {
        let torus = self.grid_flags(x.is_torus());
        let mut out = MultiImage::new(torus)?;
        for (key, t) in x.iter() {
            out.insert(key, self.apply_block(key, t.clone())?)?;
        }
        Ok(out)
    }

    fn grid_flags(&self, flags: &[bool]) -> Vec<bool> {
        self.col.iter().map(|&c| flags[c]).collect()
    }
}

/// `B_D` for `D` = 2 or 3, in ginjax's order (`make_all_operators`): the
/// permutation matrices `P` in `itertools.permutations` order, each times
/// `diag(s)` for the signs `s` in `itertools.product([1, −1])` order.
pub fn hyperoctahedral_group(d: usize) -> Result<Vec<GroupElement>> {
    check_d(d)?;
    let mut perms: Vec<Vec<usize>> = Vec::new();
    permutations(&mut (0..d).collect(), 0, &mut perms);
    // itertools.permutations yields lexicographic order.
    perms.sort();
    let mut out = Vec::with_capacity(perms.len() << d);
    for p in &perms {
        for s in 0..(1usize << d) {
            // product([1, -1], repeat=d): the last factor varies fastest.
            let signs: Vec<i8> = (0..d)
                .map(|i| if (s >> (d - 1 - i)) & 1 == 1 { -1 } else { 1 })
                .collect();
            // (P diag(s))[r, p[r]] = s[p[r]].
            out.push(GroupElement {
                col: p.clone(),
                sign: p.iter().map(|&c| signs[c]).collect(),
            });
        }
    }
    Ok(out)
}

fn permutations(v: &mut Vec<usize>, at: usize, out: &mut Vec<Vec<usize>>) {
    if at == v.len() {
        out.push(v.clone());
        return;
    }
    for i in at..v.len() {
        v.swap(at, i);
        permutations(v, at + 1, out);
        v.swap(at, i);
    }
}
