//! Frames between the supervisor and a Python worker (the other side is
//! `python/volley/_wire.py`): `u32 header length | JSON header | u32 part
//! count | (u64 length | bytes)*`, little-endian.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use serde_json::Value;

/// Most bytes one part may hold: a worker cannot make the supervisor allocate without bound.
const MAX_PART: u64 = 16 << 30;
/// Most parts in one frame (an `all_to_all` of as many ranks as a burst may have).
const MAX_PARTS: u32 = 1 << 20;
const MAX_HEADER: u32 = 1 << 20;

/// Reads one frame; `Ok(None)` if the worker closed its end first.
pub(crate) fn read(from: &mut impl Read) -> io::Result<Option<(Value, Vec<Bytes>)>> {
    let mut len = [0u8; 4];
    match from.read_exact(&mut len) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let head_len = u32::from_le_bytes(len);
    if head_len > MAX_HEADER {
        return Err(bad(format!("a header of {head_len} bytes")));
    }
    let mut head = vec![0u8; head_len as usize];
    from.read_exact(&mut head)?;
    let header: Value = serde_json::from_slice(&head).map_err(|e| bad(format!("a header that is not JSON: {e}")))?;
    from.read_exact(&mut len)?;
    let count = u32::from_le_bytes(len);
    if count > MAX_PARTS {
        return Err(bad(format!("{count} parts")));
    }
    let mut parts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut size = [0u8; 8];
        from.read_exact(&mut size)?;
        let size = u64::from_le_bytes(size);
        if size > MAX_PART {
            return Err(bad(format!("a part of {size} bytes")));
        }
        let mut part = BytesMut::zeroed(size as usize);
        from.read_exact(&mut part)?;
        parts.push(part.freeze());
    }
    Ok(Some((header, parts)))
}

/// Writes one frame.
pub(crate) fn write(to: &mut impl Write, header: &Value, parts: &[Bytes]) -> io::Result<()> {
    let head = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut prefix = Vec::with_capacity(8 + head.len());
    prefix.extend_from_slice(&(head.len() as u32).to_le_bytes());
    prefix.extend_from_slice(&head);
    prefix.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    to.write_all(&prefix)?;
    for part in parts {
        to.write_all(&(part.len() as u64).to_le_bytes())?;
        to.write_all(part)?;
    }
    to.flush()
}

/// The messages of a request: consecutive parts joined by the header's `groups` (parts per message).
pub(crate) fn messages(header: &Value, parts: Vec<Bytes>) -> io::Result<Vec<Bytes>> {
    let groups: Vec<usize> = match header.get("groups") {
        Some(Value::Array(g)) => g.iter().map(|n| n.as_u64().unwrap_or(0) as usize).collect(),
        _ => return Ok(parts),
    };
    if groups.iter().sum::<usize>() != parts.len() {
        return Err(bad(format!("groups {groups:?} for {} parts", parts.len())));
    }
    let mut parts = parts.into_iter();
    Ok(groups
        .into_iter()
        .map(|n| {
            let group: Vec<Bytes> = parts.by_ref().take(n).collect();
            match group.len() {
                1 => group.into_iter().next().unwrap_or_default(),
                _ => {
                    let mut joined = BytesMut::with_capacity(group.iter().map(Bytes::len).sum());
                    group.iter().for_each(|p| joined.extend_from_slice(p));
                    joined.freeze()
                }
            }
        })
        .collect())
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the Python worker sent {what}"))
}
