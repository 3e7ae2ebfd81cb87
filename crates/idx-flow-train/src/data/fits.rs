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

/// One header: keyword → raw value text (quotes kept), and its length in bytes.
fn read_header(
    bytes: &[u8],
    start: usize,
    path: &Path,
) -> Result<(HashMap<String, String>, usize)> {
    let mut cards = HashMap::new();
    let mut pos = start;
    loop {
        if pos + CARD > bytes.len() {
            return Err(Error::format(
                path,
                "FITS header without END card (truncated file?)",
            ));
        }
        let card = String::from_utf8_lossy(&bytes[pos..pos + CARD]).into_owned();
        pos += CARD;
        let key = card[..8].trim().to_string();
        if key == "END" {
            break;
        }
        if card.len() >= 10 && &card[8..10] == "= " {
            let raw = card[10..].trim();
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
    cards
        .get(key)
        .ok_or_else(|| Error::format(path, format!("FITS header lacks {key}")))?
        .parse::<i64>()
        .map_err(|_| {
            Error::format(
                path,
                format!("FITS header {key} = {} is not an integer", cards[key]),
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
        1
    } else {
        t[..split].parse().unwrap_or(0)
    };
    let code = t[split..].chars().next().unwrap_or(' ');
    if !matches!(code, 'E' | 'D' | 'B' | 'I' | 'J' | 'K') || repeat == 0 {
        return Err(Error::format(
            path,
            format!(
                "FITS column format {t}: expected a numeric column (E, D, B, I, J or K with a repeat count)"
            ),
        ));
    }
    Ok((repeat, code))
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

/// Reads every column of the first binary table of `path` as one channel of a
/// full-sky HEALPix map.
pub fn read_healpix_fits(path: &Path) -> Result<HealpixMaps> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(Error::format(
            path,
            "not a FITS file (expected SIMPLE = T at the start)",
        ));
    }
    let (primary, len) = read_header(&bytes, 0, path)?;
    // Skip the primary data unit, if any.
    let naxis = int_card(&primary, "NAXIS", path).unwrap_or(0);
    let bitpix = int_card(&primary, "BITPIX", path)
        .unwrap_or(8)
        .unsigned_abs() as usize;
    let data_len = if naxis == 0 {
        0
    } else {
        (1..=naxis)
            .map(|i| int_card(&primary, &format!("NAXIS{i}"), path).unwrap_or(0) as usize)
            .product::<usize>()
            * bitpix
            / 8
    };
    let ext = len + data_len.div_ceil(BLOCK) * BLOCK;
    if ext >= bytes.len() {
        return Err(Error::format(
            path,
            "FITS file has no extension; expected a BINTABLE of HEALPix maps (healpy write_map)",
        ));
    }
    let (cards, hlen) = read_header(&bytes, ext, path)?;
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
    let row_bytes = int_card(&cards, "NAXIS1", path)? as usize;
    let rows = int_card(&cards, "NAXIS2", path)? as usize;
    let fields = int_card(&cards, "TFIELDS", path)? as usize;
    if fields == 0 {
        return Err(Error::format(path, "FITS table has no columns"));
    }
    let mut cols = Vec::with_capacity(fields);
    let mut offset = 0;
    for i in 1..=fields {
        let tform = cards
            .get(&format!("TFORM{i}"))
            .ok_or_else(|| Error::format(path, format!("FITS header lacks TFORM{i}")))?;
        let (repeat, code) = parse_tform(tform, path)?;
        cols.push((offset, repeat, code));
        offset += repeat * width(code);
    }
    if offset != row_bytes {
        return Err(Error::format(
            path,
            format!("FITS rows are {row_bytes} bytes but the columns add up to {offset}"),
        ));
    }
    let repeat = cols[0].1;
    if cols.iter().any(|c| c.1 != repeat) {
        return Err(Error::format(
            path,
            "FITS columns of different lengths; expected one map per column",
        ));
    }
    let npix = rows * repeat;
    let data_start = ext + hlen;
    if data_start + rows * row_bytes > bytes.len() {
        return Err(Error::format(
            path,
            format!(
                "FITS table is truncated: expected {} bytes of data",
                rows * row_bytes
            ),
        ));
    }
    let nside = nside_of_length(npix, "the FITS map")?;
    if let Ok(declared) = int_card(&cards, "NSIDE", path)
        && declared as u64 != nside as u64
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
