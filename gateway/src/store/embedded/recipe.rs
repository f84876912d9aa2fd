//! Recipes: how an envelope is stored as its own bytes around pieces it shares
//! with the other targets' envelopes of its submission (see `segments`).

use std::io;

use super::segments::{invalid, Location};
use crate::model::submission::{envelope_checksum, NewDelivery, SharedPiece};

/// The first bytes of a recipe (an envelope assembled from its own bytes and
/// shared pieces); an envelope is JSON and never begins with a NUL.
pub(super) const RECIPE: &[u8] = b"\0ozg-recipe 1\n";
/// A recipe's step: own bytes follow (`L`, u32 length) or a shared piece (`S`,
/// u64 offset, u64 length, u32 CRC-32; big-endian).
const OWN: u8 = b'L';
const SHARED: u8 = b'S';
const OWN_STEP: usize = 5;
const SHARED_STEP: usize = 21;
/// No shared piece is larger (a corrupt recipe must not allocate without bound).
const PIECE_MAX: u64 = 4 << 30;

/// One step of a recipe.
pub(super) enum Step {
    Own(std::ops::Range<usize>),
    Shared { offset: u64, len: u64, crc32: u32 },
}

/// The recipe of `d`: its own bytes around the shared pieces (at `shared`).
pub(super) fn recipe(d: &NewDelivery, shared: &[Location]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(recipe_len(d));
    out.extend_from_slice(RECIPE);
    let own = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.push(OWN);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    let mut from = 0;
    for s in &d.splices {
        let piece = shared.get(s.shared).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "splice names no shared piece")
        })?;
        let at = s.at.clamp(from, d.envelope.len());
        own(&mut out, &d.envelope[from..at]);
        out.push(SHARED);
        out.extend_from_slice(&(piece.offset as u64).to_be_bytes());
        out.extend_from_slice(&(piece.len as u64).to_be_bytes());
        out.extend_from_slice(&piece.crc32.to_be_bytes());
        from = at;
    }
    own(&mut out, &d.envelope[from..]);
    Ok(out)
}

/// Bytes `d` takes in a segment: its envelope, or its recipe.
pub(super) fn recipe_len(d: &NewDelivery) -> usize {
    if d.splices.is_empty() {
        d.envelope.len()
    } else {
        RECIPE.len()
            + d.envelope.len()
            + (d.splices.len() + 1) * OWN_STEP
            + d.splices.len() * SHARED_STEP
    }
}

/// The steps of a recipe (without [`RECIPE`]); bounds are checked.
pub(super) fn parse_recipe(r: &[u8]) -> io::Result<Vec<Step>> {
    let bad = || {
        invalid("a recipe in a segment is malformed (disk damage or an edited segment file)".into())
    };
    let take = |at: usize, n: usize| r.get(at..at + n).ok_or_else(bad);
    let mut steps = Vec::new();
    let mut at = 0;
    while at < r.len() {
        match r[at] {
            OWN => {
                let n =
                    u32::from_be_bytes(take(at + 1, 4)?.try_into().map_err(|_| bad())?) as usize;
                take(at + OWN_STEP, n)?;
                steps.push(Step::Own(at + OWN_STEP..at + OWN_STEP + n));
                at += OWN_STEP + n;
            }
            SHARED => {
                let b = take(at + 1, 20)?;
                let offset = u64::from_be_bytes(b[..8].try_into().map_err(|_| bad())?);
                let len = u64::from_be_bytes(b[8..16].try_into().map_err(|_| bad())?);
                let crc32 = u32::from_be_bytes(b[16..].try_into().map_err(|_| bad())?);
                if len > PIECE_MAX {
                    return Err(bad());
                }
                steps.push(Step::Shared { offset, len, crc32 });
                at += SHARED_STEP;
            }
            _ => return Err(bad()),
        }
    }
    Ok(steps)
}

/// Writes each delivery's envelope, or its recipe over `pieces` (where
/// `shared` lies), with `write(bytes, crc32, whole envelope size)`.
pub(super) fn place(
    deliveries: &[NewDelivery],
    shared: &[SharedPiece],
    pieces: &[Location],
    mut write: impl FnMut(&[u8], u32, usize) -> io::Result<Location>,
) -> io::Result<Vec<Location>> {
    deliveries
        .iter()
        .map(|d| {
            let size = d.envelope.len()
                + d.splices
                    .iter()
                    .map(|s| shared.get(s.shared).map_or(0, SharedPiece::len))
                    .sum::<usize>();
            if d.splices.is_empty() {
                write(&d.envelope, d.envelope_crc32, size)
            } else {
                let r = recipe(d, pieces)?;
                write(&r, envelope_checksum(&r), size)
            }
        })
        .collect()
}
