//! Reading and writing named tensors in the safetensors format, with dtype and
//! shape checks that name the tensor, the expected and the found layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};

use crate::error::{Error, Result};

/// A safetensors file read into memory.
///
/// ```no_run
/// use idx_flow_healpix::io::SafetensorsFile;
/// let file = SafetensorsFile::open("fixtures/layers.safetensors")?;
/// let (values, shape) = file.f32("spatial_conv.output")?;
/// assert_eq!(values.len(), shape.iter().product::<usize>());
/// # Ok::<(), idx_flow_healpix::Error>(())
/// ```
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    header_len: usize,
    metadata: Metadata,
}

/// Typed values of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// float32
    F32(Vec<f32>),
    /// float64
    F64(Vec<f64>),
    /// int64
    I64(Vec<i64>),
}

impl SafetensorsFile {
    /// Reads and validates a file (header, offsets, body length).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_bytes(path, bytes)
    }

    /// Parses bytes already in memory; `path` is only used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let path = path.into();
        SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::format(&path, format!("not a valid safetensors file: {e}")))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::format(&path, format!("not a valid safetensors file: {e}")))?;
        Ok(Self {
            path,
            bytes,
            header_len,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.metadata.tensors().into_keys().collect();
        names.sort();
        names
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.metadata.info(name).is_some()
    }

    /// The free-form `__metadata__` strings of the header.
    pub fn header_metadata(&self) -> HashMap<String, String> {
        self.metadata.metadata().clone().unwrap_or_default()
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.info(name)?.shape.clone())
    }

    fn info(&self, name: &str) -> Result<&safetensors::tensor::TensorInfo> {
        self.metadata
            .info(name)
            .ok_or_else(|| Error::format(&self.path, format!("no tensor named '{name}'")))
    }

    fn raw(&self, name: &str, want: Dtype, what: &str) -> Result<(&[u8], Vec<usize>)> {
        let info = self.info(name)?;
        if info.dtype != want {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor '{name}': expected {what}, got {:?} {:?}",
                    info.dtype, info.shape
                ),
            ));
        }
        let start = 8 + self.header_len + info.data_offsets.0;
        let end = 8 + self.header_len + info.data_offsets.1;
        Ok((&self.bytes[start..end], info.shape.clone()))
    }

    /// A float32 tensor's values (row-major) and shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let (raw, shape) = self.raw(name, Dtype::F32, "float32")?;
        let v = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((v, shape))
    }

    /// A float64 tensor's values (row-major) and shape.
    pub fn f64(&self, name: &str) -> Result<(Vec<f64>, Vec<usize>)> {
        let (raw, shape) = self.raw(name, Dtype::F64, "float64")?;
        let v = raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect();
        Ok((v, shape))
    }

    /// An int64 tensor's values (row-major) and shape.
    pub fn i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let (raw, shape) = self.raw(name, Dtype::I64, "int64")?;
        let v = raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect();
        Ok((v, shape))
    }

    /// Any supported tensor (float32, float64, int64) with its shape.
    pub fn tensor(&self, name: &str) -> Result<(TensorData, Vec<usize>)> {
        match self.info(name)?.dtype {
            Dtype::F32 => self.f32(name).map(|(v, s)| (TensorData::F32(v), s)),
            Dtype::F64 => self.f64(name).map(|(v, s)| (TensorData::F64(v), s)),
            Dtype::I64 => self.i64(name).map(|(v, s)| (TensorData::I64(v), s)),
            other => Err(Error::format(
                &self.path,
                format!("tensor '{name}': expected float32, float64 or int64, got {other:?}"),
            )),
        }
    }
}

/// Collects named tensors and writes them as one safetensors file, atomically.
#[derive(Default)]
pub struct SafetensorsWriter {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
}

impl SafetensorsWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        count: usize,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let expected: usize = shape.iter().product();
        if expected != count {
            return Err(Error::Shape {
                context: format!("tensor '{name}'"),
                expected: format!("{expected} values for shape {shape:?}"),
                got: format!("{count} values"),
            });
        }
        self.tensors
            .push((name.to_string(), dtype, shape.to_vec(), bytes));
        Ok(())
    }

    /// Adds a float32 tensor.
    pub fn add_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<()> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add(name, Dtype::F32, shape, values.len(), bytes)
    }

    /// Adds a float64 tensor.
    pub fn add_f64(&mut self, name: &str, shape: &[usize], values: &[f64]) -> Result<()> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add(name, Dtype::F64, shape, values.len(), bytes)
    }

    /// Adds an int64 tensor.
    pub fn add_i64(&mut self, name: &str, shape: &[usize], values: &[i64]) -> Result<()> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add(name, Dtype::I64, shape, values.len(), bytes)
    }

    /// Sets a `__metadata__` string.
    pub fn set_metadata(&mut self, key: &str, value: impl Into<String>) {
        self.metadata.insert(key.to_string(), value.into());
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let views = self
            .tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::arg("tensor", format!("'{name}': {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::tensor::serialize(views, meta)
            .map_err(|e| Error::arg("tensors", format!("cannot serialise: {e}")))
    }

    /// Writes the file (temporary name, then rename).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        super::write_bytes_atomically(path.as_ref(), &self.to_bytes()?)
    }
}
