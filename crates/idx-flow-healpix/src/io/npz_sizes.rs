//! Checks the sizes an `.npz` archive's members declare before ndarray-npy
//! reads them.
//!
//! ndarray-npy 0.10 allocates a member's declared header length and then its
//! declared shape before it reads a byte of either, so a 2 kB archive whose
//! header says `(1000000, 10000)` asks for 80 GB. This pass reads only each
//! member's `.npy` header, through a reader that can never yield more than the
//! member can hold, and refuses any header whose shape needs more data than
//! that.

use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::Path;

use ndarray_npy::npy::header::Header;
use py_literal::Value as PyValue;

use crate::error::{Error, Result};

/// The most a deflated stream can expand: 1032 output bytes per input byte
/// (zlib's technical report). A member can never hold more than this many
/// times the archive's own size, whatever its zip header claims.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// `.npy` magic string and the version bytes that follow it.
const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Refuses `path` when one of the members named in `keys` (with or without
/// `.npy`) declares a header or a shape larger than the member can hold.
pub(super) fn check_npz_member_sizes(path: &Path, keys: &[&str]) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let unreadable =
        |e: zip::result::ZipError| Error::format(path, format!("not a readable .npz archive: {e}"));
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(unreadable)?;
    for index in 0..archive.len() {
        let member = archive.by_index(index).map_err(unreadable)?;
        let name = member.name().to_owned();
        let key = name.strip_suffix(".npy").unwrap_or(&name);
        if !keys.contains(&key) {
            continue;
        }
        let capacity = member
            .size()
            .min(file_len.saturating_mul(DEFLATE_MAX_RATIO));
        check_npy_member(path, key, member.take(capacity), capacity)?;
    }
    Ok(())
}

/// Reads one member's `.npy` header from `reader` (at most `capacity` bytes)
/// and checks that its shape fits in the bytes left after it.
fn check_npy_member(path: &Path, key: &str, mut reader: impl Read, capacity: u64) -> Result<()> {
    let bad = |what: String| Error::format(path, format!("'{key}': {what}"));
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|_| bad(format!("not an .npy array: it holds only {capacity} bytes")))?;
    if &prefix[..6] != NPY_MAGIC {
        return Err(bad(
            "not an .npy array: it does not start with \\x93NUMPY".into()
        ));
    }
    let mut bytes = prefix.to_vec();
    let header_len = match prefix[6] {
        1 => {
            let mut len = [0u8; 2];
            read_into(&mut reader, &mut len, &bad)?;
            bytes.extend_from_slice(&len);
            u64::from(u16::from_le_bytes(len))
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            read_into(&mut reader, &mut len, &bad)?;
            bytes.extend_from_slice(&len);
            u64::from(u32::from_le_bytes(len))
        }
        v => {
            return Err(bad(format!(
                "unsupported .npy version {v}, expected 1, 2 or 3"
            )));
        }
    };
    let prefix_len = bytes.len() as u64;
    if prefix_len + header_len > capacity {
        return Err(bad(format!(
            "the .npy header declares {header_len} bytes but the member holds only {capacity} \
             (a truncated or damaged file)"
        )));
    }
    // `take` reads what is there and no more; the header was just bounded by
    // the member's size, so this allocation is too.
    (&mut reader)
        .take(header_len)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read its .npy header: {e}")))?;
    let header = Header::from_reader(&mut Cursor::new(&bytes))
        .map_err(|e| bad(format!("not a valid .npy header: {e}")))?;
    let Some(element_bytes) = element_size(&header.type_descriptor) else {
        // An unknown descriptor is refused by ndarray-npy before it allocates.
        return Ok(());
    };
    let data_capacity = capacity - prefix_len - header_len;
    let needed = header
        .shape
        .iter()
        .try_fold(element_bytes, |acc, &n| acc.checked_mul(n as u64));
    match needed {
        Some(needed) if needed <= data_capacity => Ok(()),
        _ => Err(bad(format!(
            "the header says shape {:?} of {} ({}) but the member holds only {data_capacity} \
             bytes of data (a truncated file, or a header with the wrong shape)",
            header.shape,
            header.type_descriptor,
            needed.map_or_else(
                || "more bytes than exist".to_owned(),
                |n| format!("{n} bytes")
            ),
        ))),
    }
}

fn read_into(reader: &mut impl Read, buf: &mut [u8], bad: &impl Fn(String) -> Error) -> Result<()> {
    reader
        .read_exact(buf)
        .map_err(|_| bad("truncated inside its .npy header".into()))
}

/// The size of one element of a simple descriptor such as `'<f8'` or `'|u1'`.
fn element_size(descriptor: &PyValue) -> Option<u64> {
    let PyValue::String(s) = descriptor else {
        return None;
    };
    let digits = s.trim_start_matches(['<', '>', '|', '=']).get(1..)?;
    digits.parse::<u64>().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data_bytes: usize) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data_bytes));
        out
    }

    fn check(bytes: &[u8]) -> Result<()> {
        check_npy_member(Path::new("g.npz"), "indices", bytes, bytes.len() as u64)
    }

    #[test]
    fn a_member_that_holds_its_shape_passes() {
        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }\n";
        check(&npy(h, 48)).unwrap();
    }

    #[test]
    fn a_shape_larger_than_the_member_is_refused_by_name() {
        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (100000, 100000), }\n";
        let err = check(&npy(h, 48)).unwrap_err().to_string();
        assert!(err.contains("'indices'"), "{err}");
        assert!(err.contains("[100000, 100000]"), "{err}");
        assert!(err.contains("80000000000 bytes"), "{err}");
        assert!(err.contains("holds only 48 bytes"), "{err}");
    }

    #[test]
    fn a_shape_whose_size_overflows_is_refused() {
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n";
        let err = check(&npy(h, 8)).unwrap_err().to_string();
        assert!(err.contains("more bytes than exist"), "{err}");
    }

    #[test]
    fn a_header_longer_than_the_member_is_refused_before_reading_it() {
        let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"{'descr'");
        let err = check(&bytes).unwrap_err().to_string();
        assert!(err.contains("declares 4294967295 bytes"), "{err}");
    }

    #[test]
    fn element_sizes_come_from_the_descriptor() {
        assert_eq!(element_size(&PyValue::String("<f8".into())), Some(8));
        assert_eq!(element_size(&PyValue::String("|u1".into())), Some(1));
        assert_eq!(element_size(&PyValue::String("<c16".into())), Some(16));
        assert_eq!(element_size(&PyValue::String("<U0".into())), None);
        assert_eq!(element_size(&PyValue::Boolean(true)), None);
    }
}
