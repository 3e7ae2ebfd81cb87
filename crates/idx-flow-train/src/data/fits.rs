//! HEALPix maps in FITS binary tables, as healpy's `write_map` writes them
//! (and reads them with `read_map(field=None)`): an empty primary HDU, then a
//! `BINTABLE` whose columns are the maps (one channel each, `TFORMn = '1024E'`,
//! `'E'`, `'D'`, ...), with `NSIDE`, `ORDERING` (`RING` or `NESTED`) and
//! `INDXSCHM = 'IMPLICIT'` (full sky) in its header.
//!
//! [`write_healpix_fits`] writes the same layout (float32 columns), so maps
//! made here load in healpy.
//!
//! ```no_run
//! use idx_flow_train::data::fits::read_healpix_fits;
//! let maps = read_healpix_fits("cmb.fits".as_ref())?;
//! println!("nside {}, {} channels", maps.nside(), maps.channels());
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::maps::{HealpixMaps, nside_of_length};
use crate::{Error, Result};
use idx_flow_healpix::geometry::Ordering;

const BLOCK: usize = 2880;
const CARD: usize = 80;
/// The FITS standard's limit on NAXIS and TFIELDS.
const MAX_AXES_OR_FIELDS: usize = 999;

/// One header: keyword → raw value text (quotes kept), and its length in bytes.
///
/// Cards are read as bytes: a damaged card (non-ASCII bytes) gives a value
/// that fails to parse where it matters, never a slice inside a character.
fn read_header(
    bytes: &[u8],
    start: usize,
    path: &Path,
) -> Result<(HashMap<String, String>, usize)> {
    let mut cards = HashMap::new();
    let mut pos = start;
    loop {
        let Some(card) = bytes.get(pos..pos + CARD) else {
            return Err(Error::format(
                path,
                format!(
                    "FITS header starting at byte {start} has no END card before the end of the file (truncated file?)"
                ),
            ));
        };
        pos += CARD;
        let key = String::from_utf8_lossy(&card[..8]).trim().to_string();
        if key == "END" {
            break;
        }
        if &card[8..10] == b"= " {
            let raw = String::from_utf8_lossy(&card[10..]);
            let raw = raw.trim();
            // Strip a trailing comment outside quotes.
            let value = if let Some(rest) = raw.strip_prefix('\'') {
                match rest.find('\'') {
                    Some(end) => format!("'{}'", rest[..end].trim_end()),
                    None => raw.to_string(),
                }
            } else {
                raw.split('/').next().unwrap_or("").trim().to_string()
            };
            cards.insert(key, value);
        }
    }
    let len = (pos - start).div_ceil(BLOCK) * BLOCK;
    Ok((cards, len))
}

fn int_card(cards: &HashMap<String, String>, key: &str, path: &Path) -> Result<i64> {
    let value = cards
        .get(key)
        .ok_or_else(|| Error::format(path, format!("FITS header lacks {key}")))?;
    value.parse::<i64>().map_err(|_| {
        Error::format(
            path,
            format!("FITS header {key} = {value} is not an integer"),
        )
    })
}

/// A size from the header: a non-negative integer no larger than `max`.
fn size_card(cards: &HashMap<String, String>, key: &str, max: usize, path: &Path) -> Result<usize> {
    let value = int_card(cards, key, path)?;
    usize::try_from(value)
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| {
            Error::format(
                path,
                format!("FITS header {key} = {value}, expected an integer from 0 to {max}"),
            )
        })
}

fn str_card(cards: &HashMap<String, String>, key: &str) -> Option<String> {
    cards
        .get(key)
        .map(|v| v.trim_matches('\'').trim().to_ascii_uppercase())
}

/// A column's element type and repeat count from `TFORM` (`1024E`, `D`, `J`, ...).
fn parse_tform(tform: &str, path: &Path) -> Result<(usize, char)> {
    let t = tform.trim_matches('\'').trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let repeat = if split == 0 {
        Some(1)
    } else {
        t[..split].parse::<usize>().ok()
    };
    let code = t[split..].chars().next().unwrap_or(' ');
    match repeat {
        Some(repeat) if repeat > 0 && matches!(code, 'E' | 'D' | 'B' | 'I' | 'J' | 'K') => {
            Ok((repeat, code))
        }
        _ => Err(Error::format(
            path,
            format!(
                "FITS column format {t}: expected a numeric column (E, D, B, I, J or K with a positive repeat count)"
            ),
        )),
    }
}

fn width(code: char) -> usize {
    match code {
        'B' => 1,
        'I' => 2,
        'E' | 'J' => 4,
        _ => 8,
    }
}

fn decode(code: char, b: &[u8]) -> f64 {
    match code {
        'B' => b[0] as f64,
        'I' => i16::from_be_bytes([b[0], b[1]]) as f64,
        'J' => i32::from_be_bytes(b[..4].try_into().unwrap_or_default()) as f64,
        'K' => i64::from_be_bytes(b[..8].try_into().unwrap_or_default()) as f64,
        'E' => f32::from_be_bytes(b[..4].try_into().unwrap_or_default()) as f64,
        _ => f64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
    }
}

/// `a · b`, or an error naming the sizes when it overflows (a damaged header).
fn product(a: usize, b: usize, what: &str, path: &Path) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| {
        Error::format(
            path,
            format!("FITS header sizes overflow: {what} = {a} × {b} (damaged header?)"),
        )
    })
}

/// Reads every column of the first binary table of `path` as one channel of a
/// full-sky HEALPix map.
pub fn read_healpix_fits(path: &Path) -> Result<HealpixMaps> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_healpix_fits_bytes(&bytes, path)
}

/// [`read_healpix_fits`] on the content of a file already in memory; `path`
/// names it in errors.
pub fn read_healpix_fits_bytes(bytes: &[u8], path: &Path) -> Result<HealpixMaps> {
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(Error::format(
            path,
            "not a FITS file (expected SIMPLE = T at the start)",
        ));
    }
    let (primary, len) = read_header(bytes, 0, path)?;
    // Skip the primary data unit, if any.
    let naxis = size_card(&primary, "NAXIS", MAX_AXES_OR_FIELDS, path).unwrap_or(0);
    let bitpix = int_card(&primary, "BITPIX", path)
        .unwrap_or(8)
        .unsigned_abs()
        .min(64) as usize;
    let mut data_len = if naxis == 0 { 0 } else { bitpix / 8 };
    for i in 1..=naxis {
        let n = size_card(&primary, &format!("NAXIS{i}"), bytes.len(), path)?;
        data_len = product(data_len, n, "the primary data size", path)?;
    }
    let ext = data_len
        .div_ceil(BLOCK)
        .checked_mul(BLOCK)
        .and_then(|d| d.checked_add(len))
        .filter(|&e| e < bytes.len())
        .ok_or_else(|| {
            Error::format(
                path,
                "FITS file has no extension; expected a BINTABLE of HEALPix maps (healpy write_map)",
            )
        })?;
    let (cards, hlen) = read_header(bytes, ext, path)?;
    if str_card(&cards, "XTENSION").as_deref() != Some("BINTABLE") {
        return Err(Error::format(
            path,
            "first FITS extension is not a BINTABLE (expected healpy write_map's layout)",
        ));
    }
    if let Some(s) = str_card(&cards, "INDXSCHM")
        && s != "IMPLICIT"
    {
        return Err(Error::format(
            path,
            format!(
                "INDXSCHM = {s}: partial-sky (explicit index) maps are not supported, expected IMPLICIT (full sky)"
            ),
        ));
    }
    let ordering = match str_card(&cards, "ORDERING").as_deref() {
        Some("RING") | None => Ordering::Ring,
        Some("NESTED") | Some("NEST") => Ordering::Nested,
        Some(o) => {
            return Err(Error::format(
                path,
                format!("ORDERING = {o}, expected RING or NESTED"),
            ));
        }
    };
    let row_bytes = size_card(&cards, "NAXIS1", bytes.len(), path)?;
    let rows = size_card(&cards, "NAXIS2", bytes.len(), path)?;
    let fields = size_card(&cards, "TFIELDS", MAX_AXES_OR_FIELDS, path)?;
    if fields == 0 {
        return Err(Error::format(
            path,
            "FITS table has no columns (TFIELDS = 0)",
        ));
    }
    let mut cols = Vec::with_capacity(fields);
    let mut offset = 0usize;
    for i in 1..=fields {
        let tform = cards
            .get(&format!("TFORM{i}"))
            .ok_or_else(|| Error::format(path, format!("FITS header lacks TFORM{i}")))?;
        let (repeat, code) = parse_tform(tform, path)?;
        cols.push((offset, repeat, code));
        offset = product(repeat, width(code), "a column's width", path)?
            .checked_add(offset)
            .ok_or_else(|| Error::format(path, "FITS column widths overflow (damaged header?)"))?;
    }
    if offset != row_bytes {
        return Err(Error::format(
            path,
            format!("FITS rows are {row_bytes} bytes (NAXIS1) but the columns add up to {offset}"),
        ));
    }
    let repeat = cols[0].1;
    if cols.iter().any(|c| c.1 != repeat) {
        return Err(Error::format(
            path,
            "FITS columns of different lengths; expected one map per column",
        ));
    }
    let data_start = ext + hlen;
    let table_bytes = product(rows, row_bytes, "the table size", path)?;
    if data_start.saturating_add(table_bytes) > bytes.len() {
        return Err(Error::format(
            path,
            format!(
                "FITS table is truncated: expected {table_bytes} bytes of data ({rows} rows of {row_bytes}), the file holds {}",
                bytes.len().saturating_sub(data_start)
            ),
        ));
    }
    // rows · repeat ≤ rows · row_bytes, which fits: no overflow.
    let npix = rows * repeat;
    let nside =
        nside_of_length(npix, "the FITS map").map_err(|e| Error::format(path, e.to_string()))?;
    if let Ok(declared) = int_card(&cards, "NSIDE", path)
        && declared != i64::from(nside)
    {
        return Err(Error::format(
            path,
            format!(
                "header says NSIDE = {declared} but the table holds {npix} pixels (nside {nside})"
            ),
        ));
    }
    let scale = |i: usize, key: &str, default: f64| {
        cards
            .get(&format!("{key}{i}"))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let mut data = Vec::with_capacity(fields * npix);
    for (i, &(off, repeat, code)) in cols.iter().enumerate() {
        let (zero, sc) = (scale(i + 1, "TZERO", 0.0), scale(i + 1, "TSCAL", 1.0));
        let w = width(code);
        for r in 0..rows {
            let row = data_start + r * row_bytes + off;
            for e in 0..repeat {
                let raw = decode(code, &bytes[row + e * w..row + (e + 1) * w]);
                let v = if raw == super::maps::UNSEEN {
                    raw
                } else {
                    raw * sc + zero
                };
                data.push(v as f32);
            }
        }
    }
    HealpixMaps::new(ordering, nside, fields, data).map_err(|e| Error::format(path, e.to_string()))
}

fn card(key: &str, value: &str) -> [u8; CARD] {
    let text = if value.is_empty() {
        format!("{key:<8}")
    } else {
        format!("{key:<8}= {value:>20}")
    };
    let mut out = [b' '; CARD];
    out[..text.len().min(CARD)].copy_from_slice(&text.as_bytes()[..text.len().min(CARD)]);
    out
}

fn pad(buf: &mut Vec<u8>, fill: u8) {
    while !buf.len().is_multiple_of(BLOCK) {
        buf.push(fill);
    }
}

/// Writes channel maps `[C][N]` (one column each, float32, 1024 values per row
/// when `N` allows) in healpy's `write_map` layout, atomically.
pub fn write_healpix_fits(path: &Path, ordering: Ordering, maps: &[Vec<f32>]) -> Result<()> {
    let n = maps.first().map_or(0, Vec::len);
    if maps.is_empty() || maps.iter().any(|m| m.len() != n) {
        return Err(Error::arg(
            "maps",
            "expected at least one map, all of the same length",
        ));
    }
    let nside = nside_of_length(n, "the map")?;
    let repeat = if n.is_multiple_of(1024) { 1024 } else { 1 };
    let rows = n / repeat;
    let mut buf = Vec::new();
    for (k, v) in [
        ("SIMPLE", "T"),
        ("BITPIX", "8"),
        ("NAXIS", "0"),
        ("EXTEND", "T"),
    ] {
        buf.extend_from_slice(&card(k, v));
    }
    buf.extend_from_slice(&card("END", ""));
    pad(&mut buf, b' ');
    let mut cards = vec![
        ("XTENSION".to_string(), "'BINTABLE'".to_string()),
        ("BITPIX".into(), "8".into()),
        ("NAXIS".into(), "2".into()),
        ("NAXIS1".into(), (4 * repeat * maps.len()).to_string()),
        ("NAXIS2".into(), rows.to_string()),
        ("PCOUNT".into(), "0".into()),
        ("GCOUNT".into(), "1".into()),
        ("TFIELDS".into(), maps.len().to_string()),
    ];
    for i in 1..=maps.len() {
        cards.push((format!("TTYPE{i}"), format!("'CHANNEL{i}'")));
        cards.push((format!("TFORM{i}"), format!("'{repeat}E'")));
    }
    cards.extend([
        ("PIXTYPE".to_string(), "'HEALPIX'".to_string()),
        (
            "ORDERING".into(),
            format!(
                "'{}'",
                if ordering == Ordering::Nested {
                    "NESTED"
                } else {
                    "RING"
                }
            ),
        ),
        ("NSIDE".into(), nside.to_string()),
        ("FIRSTPIX".into(), "0".into()),
        ("LASTPIX".into(), (n - 1).to_string()),
        ("INDXSCHM".into(), "'IMPLICIT'".into()),
    ]);
    for (k, v) in &cards {
        buf.extend_from_slice(&card(k, v));
    }
    buf.extend_from_slice(&card("END", ""));
    pad(&mut buf, b' ');
    for r in 0..rows {
        for m in maps {
            for v in &m[r * repeat..(r + 1) * repeat] {
                buf.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    pad(&mut buf, 0);
    idx_flow_healpix::io::write_atomically(path, |f| {
        f.write_all(&buf).map_err(|e| Error::io(path, e))
    })
}
