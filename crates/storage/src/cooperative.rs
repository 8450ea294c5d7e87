//! Cooperative download: the workers of a pack fetch one object once, each a
//! byte range, and hand each other their pieces through the communicator. A
//! piece crosses the pack as a `Bytes` handle, not a copy, so the pack pulls
//! the object from storage once and holds it in memory once.

use bytes::Bytes;
use volley_comm::Comm;

use crate::error::{Error, Result};
use crate::store::Storage;

/// An object as the pieces the workers of a pack fetched, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunks(pub Vec<Bytes>);

impl Chunks {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One contiguous copy (costs a copy; iterate the pieces where you can).
    pub fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for c in &self.0 {
            out.extend_from_slice(c);
        }
        out
    }
}

/// Fetches `key` cooperatively with the other workers of `comm`'s pack. Every
/// worker of the pack must call it with the same `key` and `tag` (a
/// point-to-point tag the caller does not use for anything else at the same
/// time). `runtime` runs the storage requests.
pub fn cooperative_get(
    storage: &Storage,
    key: &str,
    comm: &Comm,
    tag: u64,
    runtime: &tokio::runtime::Handle,
) -> Result<Chunks> {
    let ranks = comm.pack_ranks();
    let g = ranks.len() as u64;
    let me = (comm.rank() - ranks.start) as u64;
    let comm_err = |source| Error::Comm { object: storage.name(key), source };
    let size = runtime.block_on(storage.size(key))?;
    let piece = |i: u64| (size * i / g)..(size * (i + 1) / g);
    let mine = runtime.block_on(storage.get_range(key, piece(me)))?;
    for dst in ranks.clone().filter(|&r| r != comm.rank()) {
        comm.send(dst, tag, mine.clone()).map_err(comm_err)?;
    }
    let mut pieces = Vec::with_capacity(ranks.len());
    for src in ranks {
        if src == comm.rank() {
            pieces.push(mine.clone());
        } else {
            pieces.push(comm.recv(src, tag).map_err(comm_err)?);
        }
    }
    Ok(Chunks(pieces))
}
