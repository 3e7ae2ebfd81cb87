//! `.npy` files read one sample at a time and written one batch at a time,
//! so that neither a dataset nor a model's output has to fit in memory.
//!
//! [`NpyMaps`] reads the header of a `[N]`, `[C, N]` or `[T, C, N]` array and
//! then sample `t` with one positioned read (`pread`) of its `C·N` values:
//! peak memory is one sample, whatever `T` is. (A memory map would serve the
//! same reads, but the pages it touches count as the process's resident
//! memory until the kernel evicts them: a pass over a 4 GB file would show a
//! 4 GB process.) Every numeric dtype numpy writes is accepted and converted
//! to `float32`: `float16/32/64`, `int8..int64`, `uint8..uint64`, either byte
//! order. [`NpyWriter`] writes a `float32` `.npy` of a shape known up front,
//! under a temporary name renamed into place by [`NpyWriter::finish`].
//!
//! ```
//! use idx_flow_train::data::npy::{NpyMaps, NpyWriter};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("maps.npy");
//! let mut w = NpyWriter::create(&path, &[2, 1, 12])?;
//! w.append(&[1.0; 12])?;
//! w.append(&[2.0; 12])?;
//! w.finish()?;
//! let maps = NpyMaps::open(&path)?;
//! assert_eq!((maps.samples(), maps.channels(), maps.nside()), (2, 1, 1));
//! let mut sample = vec![0.0; 12];
//! maps.read(1, &mut sample)?;
//! assert_eq!(sample, vec![2.0; 12]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::maps::nside_of_length;
use crate::{Error, Result};

/// An element type of a `.npy` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `float16`.
    F16,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
    /// Signed integers of this many bytes (1, 2, 4, 8).
    Int(usize),
    /// Unsigned integers of this many bytes (1, 2, 4, 8).
    Uint(usize),
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::Int(s) | Dtype::Uint(s) => s,
        }
    }

    /// numpy's name (`float32`, `uint8`, ...).
    pub fn name(self) -> String {
        match self {
            Dtype::F16 => "float16".into(),
            Dtype::F32 => "float32".into(),
            Dtype::F64 => "float64".into(),
            Dtype::Int(s) => format!("int{}", 8 * s),
            Dtype::Uint(s) => format!("uint{}", 8 * s),
        }
    }

    /// Converts `bytes` (whole elements, little-endian unless `big`) to `f32`.
    pub fn convert(self, big: bool, bytes: &[u8], out: &mut [f32]) {
        macro_rules! each {
            ($t:ty, $to:expr) => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(size_of::<$t>())) {
                    let b: [u8; size_of::<$t>()] = b.try_into().unwrap_or_default();
                    let v = if big {
                        <$t>::from_be_bytes(b)
                    } else {
                        <$t>::from_le_bytes(b)
                    };
                    *o = $to(v);
                }
            };
        }
        match self {
            Dtype::F32 => each!(f32, |v: f32| v),
            Dtype::F64 => each!(f64, |v: f64| v as f32),
            Dtype::F16 => each!(u16, |v: u16| half::f16::from_bits(v).to_f32()),
            Dtype::Int(1) => each!(i8, |v: i8| v as f32),
            Dtype::Int(2) => each!(i16, |v: i16| v as f32),
            Dtype::Int(4) => each!(i32, |v: i32| v as f32),
            Dtype::Int(_) => each!(i64, |v: i64| v as f32),
            Dtype::Uint(1) => each!(u8, |v: u8| v as f32),
            Dtype::Uint(2) => each!(u16, |v: u16| v as f32),
            Dtype::Uint(4) => each!(u32, |v: u32| v as f32),
            Dtype::Uint(_) => each!(u64, |v: u64| v as f32),
        }
    }
}

/// What a `.npy` header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The element type.
    pub dtype: Dtype,
    /// Big-endian elements.
    pub big_endian: bool,
    /// The shape.
    pub shape: Vec<usize>,
    /// Bytes before the data.
    pub data_offset: u64,
}

impl NpyHeader {
    /// Reads the header of the `.npy` file `path` (and nothing else).
    pub fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = [0u8; 12];
        let got = read_at_most(&file, &mut head, 0, path)?;
        if got < 10 || &head[..6] != b"\x93NUMPY" {
            return Err(Error::format(
                path,
                "not a .npy file (expected numpy's \\x93NUMPY magic at the start)",
            ));
        }
        let (len, start) = match head[6] {
            1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
            2 | 3 if got == 12 => (
                u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
                12,
            ),
            v => {
                return Err(Error::format(
                    path,
                    format!(".npy format version {v}: expected 1, 2 or 3"),
                ));
            }
        };
        // The length is checked against the file before anything is allocated.
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if (start + len) as u64 > file_len {
            return Err(Error::format(
                path,
                format!(
                    "truncated .npy header: it declares {len} bytes of header, the file holds {}",
                    file_len.saturating_sub(start as u64)
                ),
            ));
        }
        let mut text = vec![0u8; len];
        if read_at_most(&file, &mut text, start as u64, path)? < len {
            return Err(Error::format(path, "truncated .npy header"));
        }
        let text = String::from_utf8_lossy(&text);
        let field = |key: &str| -> Result<&str> {
            let at = text.find(&format!("'{key}'")).ok_or_else(|| {
                Error::format(path, format!(".npy header without '{key}': {text}"))
            })?;
            let rest = &text[at + key.len() + 2..];
            Ok(rest.trim_start().trim_start_matches(':').trim_start())
        };
        let descr = field("descr")?;
        let descr = descr
            .strip_prefix('\'')
            .and_then(|d| d.split('\'').next())
            .ok_or_else(|| Error::format(path, format!("unreadable dtype in {text}")))?;
        let (dtype, big_endian) = parse_descr(descr).ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "dtype '{descr}' is not supported: expected float16/32/64, int8..int64 or uint8..uint64"
                ),
            )
        })?;
        if field("fortran_order")?.starts_with("True") {
            return Err(Error::format(
                path,
                "the array is in Fortran order; save it with np.save(path, np.ascontiguousarray(a))",
            ));
        }
        let shape_text = field("shape")?;
        let inner = shape_text
            .strip_prefix('(')
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| Error::format(path, format!("unreadable shape in {text}")))?;
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| Error::format(path, format!("unreadable shape ({inner})")))?;
        Ok(Self {
            dtype,
            big_endian,
            shape,
            data_offset: (start + len) as u64,
        })
    }
}

fn parse_descr(descr: &str) -> Option<(Dtype, bool)> {
    // `get` rather than `split_at`: a damaged descriptor may be empty or
    // start with a character of several bytes.
    let order = descr.get(..1)?;
    let rest = descr.get(1..)?;
    let big = match order {
        ">" => true,
        "<" | "|" | "=" => cfg!(target_endian = "big") && order == "=",
        _ => return None,
    };
    let kind = rest.get(..1)?;
    let size: usize = rest.get(1..)?.parse().ok()?;
    let dtype = match (kind, size) {
        ("f", 2) => Dtype::F16,
        ("f", 4) => Dtype::F32,
        ("f", 8) => Dtype::F64,
        ("i", 1 | 2 | 4 | 8) => Dtype::Int(size),
        ("u", 1 | 2 | 4 | 8) => Dtype::Uint(size),
        _ => return None,
    };
    Some((dtype, big))
}

/// One positioned read (no shared file cursor, so threads can read at once).
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// One positioned read (Windows moves the cursor, which no reader relies on).
#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64, path: &Path) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(done)
}

/// A `.npy` file of HEALPix maps (`[N]`, `[C, N]` or `[T, C, N]`), read one
/// sample at a time.
#[derive(Debug)]
pub struct NpyMaps {
    path: PathBuf,
    file: File,
    header: NpyHeader,
    samples: usize,
    channels: usize,
    npix: usize,
    nside: u32,
}

impl NpyMaps {
    /// Opens `path`, checking its header and that the file holds all the data
    /// the header promises.
    pub fn open(path: &Path) -> Result<Self> {
        let header = NpyHeader::read(path)?;
        let (samples, channels, npix) = match header.shape.as_slice() {
            [n] => (1, 1, *n),
            [c, n] => (1, *c, *n),
            [t, c, n] => (*t, *c, *n),
            shape => {
                return Err(Error::format(
                    path,
                    format!(
                        "array of shape {shape:?}; expected [N], [C, N] or [T, C, N] with N = 12·nside²"
                    ),
                ));
            }
        };
        if samples == 0 || channels == 0 {
            return Err(Error::format(
                path,
                format!("array of shape {:?} is empty", header.shape),
            ));
        }
        let nside = nside_of_length(npix, "the last axis").map_err(|e| match e {
            Error::InvalidArgument { message, .. } => Error::format(path, message),
            other => other,
        })?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let have = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let need = [samples, channels, npix, header.dtype.size()]
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n as u64))
            .unwrap_or(u64::MAX);
        if have < header.data_offset.saturating_add(need) {
            return Err(Error::format(
                path,
                format!(
                    "the header says shape {:?} of {} ({need} bytes of data) but the file holds only {} bytes of data (a truncated file, or a header with the wrong shape)",
                    header.shape,
                    header.dtype.name(),
                    have.saturating_sub(header.data_offset)
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            header,
            samples,
            channels,
            npix,
            nside,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples `T`.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Channels `C`.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// nside of the maps.
    pub fn nside(&self) -> u32 {
        self.nside
    }

    /// The element type on disk.
    pub fn dtype(&self) -> Dtype {
        self.header.dtype
    }

    /// Reads sample `t` (`[C, N]`, converted to `f32`) into `out`.
    pub fn read(&self, t: usize, out: &mut [f32]) -> Result<()> {
        let per = self.channels * self.npix;
        if t >= self.samples || out.len() != per {
            return Err(Error::arg(
                "sample",
                format!(
                    "sample {t} into {} values of {}: expected a sample below {} and {per} values",
                    out.len(),
                    self.path.display(),
                    self.samples
                ),
            ));
        }
        let size = self.header.dtype.size();
        let mut bytes = vec![0u8; per * size];
        let offset = self.header.data_offset + (t * per * size) as u64;
        if read_at_most(&self.file, &mut bytes, offset, &self.path)? < bytes.len() {
            return Err(Error::format(
                &self.path,
                format!("truncated while reading sample {t} (was the file changed?)"),
            ));
        }
        self.header
            .dtype
            .convert(self.header.big_endian, &bytes, out);
        Ok(())
    }
}

/// A `float32` `.npy` file of a shape known up front, written in pieces to a
/// temporary file beside `path` and renamed into place by
/// [`finish`](Self::finish); dropped unfinished, the temporary file is removed.
pub struct NpyWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    /// Starts `path` for an array of `shape`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        let tmp = idx_flow_healpix::io::temporary_path(path)?;
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let shape_text = if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let mut header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
        // Magic (6) + version (2) + length (2) + header + '\n', a multiple of 64.
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut head = b"\x93NUMPY\x01\x00".to_vec();
        head.extend_from_slice(&(header.len() as u16).to_le_bytes());
        head.extend_from_slice(header.as_bytes());
        let mut writer = Self {
            path: path.to_path_buf(),
            tmp,
            out: None,
            expected: shape.iter().product(),
            written: 0,
        };
        out.write_all(&head)
            .map_err(|e| Error::io(&writer.tmp, e))?;
        writer.out = Some(out);
        Ok(writer)
    }

    /// Appends values in C order.
    pub fn append(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(Error::arg(
                "values",
                format!(
                    "{} more values for {}, which holds {} and has {}",
                    values.len(),
                    self.path.display(),
                    self.expected,
                    self.written
                ),
            ));
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| Error::arg("values", "the writer is finished"))?;
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        out.write_all(&bytes).map_err(|e| Error::io(&self.tmp, e))?;
        self.written += values.len();
        Ok(())
    }

    /// Checks that every value was written, syncs the file and renames it into place.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::arg(
                "values",
                format!(
                    "{} of {} values written to {}",
                    self.written,
                    self.expected,
                    self.path.display()
                ),
            ));
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| Error::arg("values", "the writer is finished"))?;
        let result = out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))
            .and_then(|file| file.sync_all().map_err(|e| Error::io(&self.tmp, e)))
            .and_then(|()| {
                std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
