//! Puts packets back together into bundles and hands them over in the order
//! their sender numbered them.
//!
//! Packets of one bundle may arrive in any order (several connections, several
//! broker consumers), and bundles may complete out of order; messages from one
//! rank must still never overtake each other. Each sending pack numbers its
//! bundles per destination (`seq`), and bundles are released strictly in that
//! order. Aborts skip the queue: failing fast matters more than order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::mailbox::lock;
use crate::pool::{Buffer, Pool};
use crate::wire::{Header, Kind, decode_abort};

/// How far ahead of the next expected bundle a sender may run.
const SEQ_WINDOW: u64 = 1 << 20;

/// Something complete that came from another pack.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    Bundle { src_pack: usize, body: Bytes },
    Bye { src_pack: usize },
    Abort { src_pack: usize, rank: usize, reason: String },
}

/// A bundle arriving in packets. Its bytes are copied into place as they
/// come, so the copy overlaps the rest of the transfer instead of following
/// it: `assembled` holds the bundle's first bytes without a gap, `ahead`
/// the chunks that arrived before the ones in front of them.
struct Partial {
    received: u64,
    assembled: Buffer,
    ahead: BTreeMap<u64, Bytes>,
}

#[derive(Default)]
struct Source {
    next_seq: u64,
    partial: HashMap<u64, Partial>,
    complete: BTreeMap<u64, (Kind, Bytes)>,
}

/// Reassembly state for every source pack; one lock per source.
pub(crate) struct Reassembler {
    sources: Vec<Mutex<Source>>,
    pool: Arc<Pool>,
}

impl Reassembler {
    pub fn new(packs: usize, pool: Arc<Pool>) -> Self {
        Reassembler { sources: (0..packs).map(|_| Mutex::new(Source::default())).collect(), pool }
    }

    /// Takes one packet (its header already validated against the limits) and
    /// hands what it completed to `deliver`, in order. `deliver` runs under the
    /// source's lock: two packets completing bundles of one source on two
    /// threads must not deliver them out of order.
    pub fn push(&self, header: Header, body: Bytes, mut deliver: impl FnMut(Arrival) -> Result<()>) -> Result<()> {
        let src_pack = header.src_pack as usize;
        let source = self
            .sources
            .get(src_pack)
            .ok_or_else(|| Error::protocol(format!("packet from pack {src_pack}, which is not in this burst")))?;
        if body.len() != header.len as usize {
            return Err(Error::protocol("packet body length differs from its header"));
        }
        if matches!(header.kind, Kind::Fin | Kind::Shm | Kind::Segment) {
            return Err(Error::protocol("a transport's own packet reached reassembly"));
        }
        if header.kind == Kind::Abort {
            let (rank, reason) = decode_abort(&body)?;
            return deliver(Arrival::Abort { src_pack, rank: rank as usize, reason });
        }
        let mut source = lock(source);
        if header.seq < source.next_seq || header.seq >= source.next_seq + SEQ_WINDOW {
            return Err(Error::protocol(format!(
                "pack {src_pack} sent bundle {} but {} is expected next",
                header.seq, source.next_seq
            )));
        }
        if source.complete.contains_key(&header.seq) {
            return Err(Error::protocol(format!("pack {src_pack} sent bundle {} twice", header.seq)));
        }
        let whole = if header.total == header.len as u64 {
            if source.partial.contains_key(&header.seq) {
                return Err(Error::protocol("single-packet bundle collides with a partial one"));
            }
            Some(body)
        } else {
            let partial = source.partial.entry(header.seq).or_insert_with(|| Partial {
                received: 0,
                assembled: self.pool.take(header.total as usize),
                ahead: BTreeMap::new(),
            });
            add_chunk(partial, header.offset, body)?;
            match partial.received == header.total {
                // Every byte came once and none overlaps: nothing is left ahead.
                true => source.partial.remove(&header.seq).map(|p| p.assembled.freeze()),
                false => None,
            }
        };
        if let Some(body) = whole {
            source.complete.insert(header.seq, (header.kind, body));
        }
        while let Some((kind, body)) = {
            let next = source.next_seq;
            source.complete.remove(&next)
        } {
            source.next_seq += 1;
            deliver(match kind {
                Kind::Data => Arrival::Bundle { src_pack, body },
                Kind::Bye => Arrival::Bye { src_pack },
                Kind::Abort | Kind::Fin | Kind::Shm | Kind::Segment => unreachable!("returned before sequencing"),
            })?;
        }
        Ok(())
    }
}

/// Copies `body` into place if the bytes before it are there (and then the
/// chunks it was holding up), or keeps it until they are.
fn add_chunk(partial: &mut Partial, offset: u64, body: Bytes) -> Result<()> {
    let end = offset + body.len() as u64;
    let overlaps_assembled = offset < partial.assembled.len() as u64;
    let overlaps_prev =
        partial.ahead.range(..=offset).next_back().is_some_and(|(&start, prev)| start + prev.len() as u64 > offset);
    let overlaps_next = partial.ahead.range(offset..).next().is_some_and(|(&start, _)| start < end);
    if overlaps_assembled || overlaps_prev || overlaps_next {
        return Err(Error::protocol(format!("chunk at offset {offset} overlaps one already received")));
    }
    partial.received += body.len() as u64;
    if offset > partial.assembled.len() as u64 {
        partial.ahead.insert(offset, body);
        return Ok(());
    }
    partial.assembled.extend_from_slice(&body);
    while let Some(next) = partial.ahead.remove(&(partial.assembled.len() as u64)) {
        partial.assembled.extend_from_slice(&next);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::packetize;
    use bytes::{BufMut, BytesMut};

    fn body_of(packet: &crate::wire::OutPacket) -> Bytes {
        let mut b = BytesMut::new();
        for s in &packet.body {
            b.put_slice(s);
        }
        b.freeze()
    }

    /// Pushes a packet and collects what it releases.
    fn push(r: &Reassembler, p: &crate::wire::OutPacket) -> Result<Vec<Arrival>> {
        let mut out = Vec::new();
        r.push(p.header, body_of(p), |a| {
            out.push(a);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn out_of_order_packets_and_bundles_come_out_in_order() {
        let r = Reassembler::new(2, Pool::new());
        // Distinct bytes: a chunk copied to the wrong place would show.
        let first = packetize(Kind::Data, 1, 0, vec![Bytes::from((0u8..10).collect::<Vec<_>>())], 4);
        let second = packetize(Kind::Data, 1, 1, vec![Bytes::from(vec![2u8; 3])], 4);
        assert!(push(&r, &second[0]).unwrap().is_empty());
        assert!(push(&r, &first[2]).unwrap().is_empty());
        assert!(push(&r, &first[0]).unwrap().is_empty());
        let out = push(&r, &first[1]).unwrap();
        assert_eq!(
            out,
            vec![
                Arrival::Bundle { src_pack: 1, body: Bytes::from((0u8..10).collect::<Vec<_>>()) },
                Arrival::Bundle { src_pack: 1, body: Bytes::from(vec![2u8; 3]) },
            ]
        );
    }

    #[test]
    fn duplicates_overlaps_and_strangers_are_errors() {
        let r = Reassembler::new(2, Pool::new());
        let p = packetize(Kind::Data, 1, 0, vec![Bytes::from(vec![0u8; 8])], 4);
        push(&r, &p[0]).unwrap();
        assert!(push(&r, &p[0]).is_err(), "a chunk again, over the assembled bytes");
        let q = packetize(Kind::Data, 1, 1, vec![Bytes::from(vec![0u8; 12])], 4);
        push(&r, &q[2]).unwrap();
        assert!(push(&r, &q[2]).is_err(), "a chunk again, while it waits for the ones before it");
        let stranger = packetize(Kind::Data, 9, 0, vec![Bytes::from_static(b"x")], 4);
        assert!(push(&r, &stranger[0]).is_err());
        let far = packetize(Kind::Data, 0, SEQ_WINDOW + 5, vec![Bytes::from_static(b"x")], 4);
        assert!(push(&r, &far[0]).is_err());
    }

    #[test]
    fn concurrent_receivers_still_deliver_in_sequence_order() {
        // Bundles 0..200 of pack 1 (several packets each) and its goodbye, pushed from
        // four threads at once as broker consumers or striped connections do.
        let r = Reassembler::new(2, Pool::new());
        let mut packets = Vec::new();
        for seq in 0..200u64 {
            packets.extend(packetize(Kind::Data, 1, seq, vec![Bytes::from(seq.to_le_bytes().repeat(3))], 8));
        }
        packets.extend(packetize(Kind::Bye, 1, 200, Vec::new(), 8));
        let delivered = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for lane in 0..4 {
                let (r, packets, delivered) = (&r, &packets, &delivered);
                s.spawn(move || {
                    for p in packets.iter().skip(lane).step_by(4) {
                        r.push(p.header, body_of(p), |a| {
                            delivered.lock().unwrap().push(a);
                            Ok(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let delivered = delivered.into_inner().unwrap();
        assert_eq!(delivered.len(), 201);
        for (seq, a) in delivered.iter().enumerate().take(200) {
            assert_eq!(a, &Arrival::Bundle { src_pack: 1, body: Bytes::from((seq as u64).to_le_bytes().repeat(3)) });
        }
        assert_eq!(delivered[200], Arrival::Bye { src_pack: 1 });
    }
}
