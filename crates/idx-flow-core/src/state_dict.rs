//! PyTorch `state_dict`s: named tensors in idx_flow's naming, read from and
//! written to safetensors files.
//!
//! A PyTorch idx_flow model saved with
//! `safetensors.torch.save_file(model.state_dict(), "model.safetensors")`
//! loads into the matching Rust modules with [`load_state_dict`], and
//! [`state_dict`] gives back the same names, so that
//! `model.load_state_dict(safetensors.torch.load_file(...))` reads a Rust model.
//!
//! ```
//! use idx_flow_core::state_dict::{StateDict, StateValues};
//!
//! let mut sd = StateDict::new();
//! sd.insert("kernel", vec![2, 3], StateValues::F32(vec![0.5; 6]))?;
//! let path = std::env::temp_dir().join("idx-flow-core-doc.safetensors");
//! sd.save(&path)?; // written to a temporary name, then renamed
//! assert_eq!(StateDict::load(&path)?, sd);
//! # Ok::<(), idx_flow_core::Error>(())
//! ```

//!
//! A model of several layers implements [`TorchState`] by prefixing its
//! children's names as PyTorch does (`{attribute}.{name}`); the crate
//! `idx-flow-nn` shows it on a SpatialConv and a layer norm.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::module::{Param, RunningState};
use burn::tensor::{Int, Tensor, TensorData};

use crate::{Error, Result};
use idx_flow_healpix::io::{SafetensorsFile, SafetensorsWriter, TensorData as FileData};

/// Values of one state entry.
#[derive(Clone, Debug, PartialEq)]
pub enum StateValues {
    /// float32 (parameters and float buffers).
    F32(Vec<f32>),
    /// int64 (`connection_indices`, `num_batches_tracked`).
    I64(Vec<i64>),
}

/// One named tensor of a state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor {
    /// Row-major shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The values.
    pub values: StateValues,
}

impl StateTensor {
    /// The float values, or an error naming `key` if the entry holds integers.
    pub fn f32(&self, key: &str) -> Result<&[f32]> {
        match &self.values {
            StateValues::F32(v) => Ok(v),
            StateValues::I64(_) => Err(Error::arg(
                "state dict",
                format!("'{key}' holds int64 values, expected float32"),
            )),
        }
    }

    /// The integer values, or an error naming `key` if the entry holds floats.
    pub fn i64(&self, key: &str) -> Result<&[i64]> {
        match &self.values {
            StateValues::I64(v) => Ok(v),
            StateValues::F32(_) => Err(Error::arg(
                "state dict",
                format!("'{key}' holds float32 values, expected int64"),
            )),
        }
    }
}

/// Named tensors, as PyTorch's `state_dict()`: parameters and buffers in one namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    entries: BTreeMap<String, StateTensor>,
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// The names, sorted.
    pub fn keys(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The entry `key`.
    pub fn get(&self, key: &str) -> Option<&StateTensor> {
        self.entries.get(key)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over `(name, tensor)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &StateTensor)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Inserts (or replaces) an entry, checking that the values fill the shape.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        shape: Vec<usize>,
        values: StateValues,
    ) -> Result<()> {
        let key = key.into();
        let n = match &values {
            StateValues::F32(v) => v.len(),
            StateValues::I64(v) => v.len(),
        };
        let want: usize = shape.iter().product();
        if n != want {
            return Err(Error::Shape {
                context: format!("state dict entry '{key}'"),
                expected: format!("{want} values for shape {shape:?}"),
                got: format!("{n} values"),
            });
        }
        self.entries.insert(key, StateTensor { shape, values });
        Ok(())
    }

    /// The entries of a safetensors file whose names start with `prefix`, with
    /// the prefix removed (`""` takes all). float64 tensors are rounded to float32.
    pub fn from_safetensors(file: &SafetensorsFile, prefix: &str) -> Result<Self> {
        let mut sd = Self::new();
        for name in file.names() {
            let Some(key) = name.strip_prefix(prefix) else {
                continue;
            };
            let (data, shape) = file.tensor(&name)?;
            let values = match data {
                FileData::F32(v) => StateValues::F32(v),
                FileData::F64(v) => StateValues::F32(v.into_iter().map(|x| x as f32).collect()),
                FileData::I64(v) => StateValues::I64(v),
            };
            sd.insert(key, shape, values)?;
        }
        Ok(sd)
    }

    /// Reads a whole safetensors file (e.g. `save_file(model.state_dict(), path)`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_safetensors(&SafetensorsFile::open(path)?, "")
    }

    /// Adds every entry to a writer, names prefixed with `prefix`.
    pub fn add_to(&self, writer: &mut SafetensorsWriter, prefix: &str) -> Result<()> {
        for (k, t) in &self.entries {
            let name = format!("{prefix}{k}");
            match &t.values {
                StateValues::F32(v) => writer.add_f32(&name, &t.shape, v)?,
                StateValues::I64(v) => writer.add_i64(&name, &t.shape, v)?,
            }
        }
        Ok(())
    }

    /// Writes the state dict as a safetensors file (atomically), loadable by
    /// `safetensors.torch.load_file` and then `model.load_state_dict`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut w = SafetensorsWriter::new();
        self.add_to(&mut w, "")?;
        w.write(path)
    }
}

/// Receives every tensor of a module with its PyTorch name (see [`TorchState::visit_state`]).
pub trait StateVisitor {
    /// A trainable parameter.
    fn param<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>);
    /// A float buffer (running statistics, fixed weights, position tables).
    fn buffer<const D: usize>(&mut self, name: &str, tensor: &Tensor<D>);
    /// An integer buffer, given by its values and shape (connection indices, counters).
    fn int_buffer(&mut self, name: &str, shape: &[usize], values: &[i64]);
}

/// A module that reads and writes its tensors under idx_flow's PyTorch names.
pub trait TorchState: Sized {
    /// Calls the visitor for every parameter and buffer, names prefixed by
    /// `prefix` (`""` or ending with `.`).
    fn visit_state<V: StateVisitor>(&self, prefix: &str, visitor: &mut V);

    /// Replaces parameters and buffers by the entries `prefix + name` of the
    /// loader, checking shapes; the module's configuration does not change.
    fn load_state(self, prefix: &str, loader: &mut StateLoader<'_>) -> Result<Self>;
}

/// The state dict of a module (values copied to the host).
pub fn state_dict<M: TorchState>(module: &M) -> Result<StateDict> {
    struct Collect(StateDict, Option<Error>);
    impl Collect {
        fn put(&mut self, name: &str, shape: Vec<usize>, values: StateValues) {
            if let Err(e) = self.0.insert(name, shape, values) {
                self.1.get_or_insert(e);
            }
        }
    }
    impl StateVisitor for Collect {
        fn param<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
            let (v, s) = tensor_to_vec(param.val());
            self.put(name, s, StateValues::F32(v));
        }
        fn buffer<const D: usize>(&mut self, name: &str, tensor: &Tensor<D>) {
            let (v, s) = tensor_to_vec(tensor.clone());
            self.put(name, s, StateValues::F32(v));
        }
        fn int_buffer(&mut self, name: &str, shape: &[usize], values: &[i64]) {
            self.put(name, shape.to_vec(), StateValues::I64(values.to_vec()));
        }
    }
    let mut c = Collect(StateDict::new(), None);
    module.visit_state("", &mut c);
    match c.1 {
        Some(e) => Err(e),
        None => Ok(c.0),
    }
}

/// Loads a state dict into a module, strictly (PyTorch's `strict=True`):
/// every entry the module has must be present with its shape, and every entry
/// of the state dict must be used.
pub fn load_state_dict<M: TorchState>(module: M, sd: &StateDict) -> Result<M> {
    let mut loader = StateLoader::new(sd);
    let module = module.load_state("", &mut loader)?;
    loader.finish()?;
    Ok(module)
}

/// Hands out the entries of a state dict to [`TorchState::load_state`] and
/// remembers which were used.
pub struct StateLoader<'a> {
    sd: &'a StateDict,
    used: BTreeSet<String>,
}

impl<'a> StateLoader<'a> {
    /// A loader over `sd`.
    pub fn new(sd: &'a StateDict) -> Self {
        Self {
            sd,
            used: BTreeSet::new(),
        }
    }

    /// The entry `key`, marked as used; an error if it is missing.
    pub fn entry(&mut self, key: &str) -> Result<&'a StateTensor> {
        let t = self
            .sd
            .get(key)
            .ok_or_else(|| Error::arg("state dict", format!("missing key '{key}'")))?;
        self.used.insert(key.to_string());
        Ok(t)
    }

    /// Whether the state dict has `key` (without marking it used).
    pub fn contains(&self, key: &str) -> bool {
        self.sd.get(key).is_some()
    }

    /// Marks `key` as used when it is present (optional PyTorch entries such as
    /// `num_batches_tracked`); returns it.
    pub fn optional(&mut self, key: &str) -> Option<&'a StateTensor> {
        let t = self.sd.get(key)?;
        self.used.insert(key.to_string());
        Some(t)
    }

    /// The float entry `key` with exactly `shape`, as a tensor on `device`.
    pub fn tensor<const D: usize>(
        &mut self,
        key: &str,
        shape: [usize; D],
        device: &burn::tensor::Device,
    ) -> Result<Tensor<D>> {
        let t = self.entry(key)?;
        check_shape(key, &t.shape, &shape)?;
        let v = t.f32(key)?.to_vec();
        Ok(Tensor::from_data(TensorData::new(v, shape), device))
    }

    /// Replaces a parameter's value by the entry `key` (same shape), keeping
    /// its id, device and gradient setting.
    pub fn param<const D: usize>(
        &mut self,
        key: &str,
        param: Param<Tensor<D>>,
    ) -> Result<Param<Tensor<D>>> {
        let shape: [usize; D] = param.val().dims();
        let device = param.val().device();
        let value = self.tensor(key, shape, &device)?;
        Ok(param.map(|old| value.set_require_grad(old.is_require_grad())))
    }

    /// Replaces a float buffer by the entry `key` (same shape).
    pub fn buffer<const D: usize>(&mut self, key: &str, old: Tensor<D>) -> Result<Tensor<D>> {
        let shape: [usize; D] = old.dims();
        self.tensor(key, shape, &old.device())
    }

    /// Replaces a running statistic by the entry `key` (same shape).
    pub fn running<const D: usize>(
        &mut self,
        key: &str,
        old: RunningState<Tensor<D>>,
    ) -> Result<RunningState<Tensor<D>>> {
        let value = self.buffer(key, old.value())?;
        Ok(RunningState::new(value))
    }

    /// The integer entry `key` with exactly `shape`.
    pub fn ints(&mut self, key: &str, shape: &[usize]) -> Result<Vec<i64>> {
        let t = self.entry(key)?;
        check_shape(key, &t.shape, shape)?;
        Ok(t.i64(key)?.to_vec())
    }

    /// An error listing the entries no module asked for.
    pub fn finish(self) -> Result<()> {
        let unused: Vec<&str> = self
            .sd
            .keys()
            .into_iter()
            .filter(|k| !self.used.contains(*k))
            .collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(Error::arg(
                "state dict",
                format!("unexpected keys {unused:?} (not part of this module)"),
            ))
        }
    }
}

fn check_shape(key: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Shape {
            context: format!("state dict entry '{key}'"),
            expected: format!("{want:?}"),
            got: format!("{got:?}"),
        })
    }
}

/// A float tensor's values (row-major, as f32) and shape.
pub fn tensor_to_vec<const D: usize>(t: Tensor<D>) -> (Vec<f32>, Vec<usize>) {
    let dims = t.dims().to_vec();
    let data = t.into_data().convert::<f32>();
    let values = data.iter::<f32>().collect();
    (values, dims)
}

/// An integer tensor's values (row-major) and shape.
pub fn int_tensor_to_vec<const D: usize>(t: Tensor<D, Int>) -> (Vec<i64>, Vec<usize>) {
    let dims = t.dims().to_vec();
    let data = t.into_data();
    let values = data.iter::<i64>().collect();
    (values, dims)
}

/// Joins a prefix and a name: `("mlp_layers.0.", "weight")`.
pub fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}
