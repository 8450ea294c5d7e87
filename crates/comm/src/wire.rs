//! The bytes that cross between packs.
//!
//! A *bundle* is the unit of transfer between two packs: one or more messages
//! (each with its source, destination, tag and payload) travelling together,
//! so that a collective moves ONE aggregated transfer per pack pair. A bundle
//! is cut into *packets* of at most `chunk` bytes so that brokers with payload
//! limits can carry it and several connections can move it concurrently.
//!
//! ```text
//! packet  = header(36) body-chunk
//! header  = "VL" version:u8 kind:u8 src_pack:u32 seq:u64 total:u64 offset:u64 len:u32   (little endian)
//! bundle  = count:u32 entry{count} payload{count}
//! entry   = src:u32 dst:u32 space:u8 tag:u64 len:u64
//! ```
//!
//! Everything read from the wire is validated before it is used: lengths are
//! checked against limits before any allocation, so a malformed or hostile
//! frame costs an error, never a panic or an unbounded allocation.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

pub(crate) const MAGIC: [u8; 2] = *b"VL";
pub(crate) const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 36;
pub(crate) const ENTRY_LEN: usize = 25;
/// `dst` value meaning "every rank of the receiving pack" (in-pack fan-out).
pub(crate) const DST_WHOLE_PACK: u32 = u32::MAX;
/// The body of a `Segment` packet: a segment id and what happens to it.
pub(crate) const SEGMENT_LEN: u32 = 8;
/// An abort's reason is cut to this many bytes.
pub(crate) const MAX_REASON: usize = 4096;

/// What a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A chunk of a bundle of messages.
    Data = 0,
    /// The sending pack has sent its last message to this pack.
    Bye = 1,
    /// A worker of the sending pack failed; the body says which and why.
    Abort = 2,
    /// Transport-internal: this connection ends here on purpose.
    Fin = 3,
    /// Transport-internal (`shm` mode): a data packet whose body waits in a
    /// shared memory segment; the header is the data packet's, the body on
    /// the wire is a descriptor naming the segment.
    Shm = 4,
    /// Transport-internal (`shm` mode): a segment announced (its file
    /// descriptor passed with the packet) or retired.
    Segment = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Result<Kind> {
        match v {
            0 => Ok(Kind::Data),
            1 => Ok(Kind::Bye),
            2 => Ok(Kind::Abort),
            3 => Ok(Kind::Fin),
            4 => Ok(Kind::Shm),
            5 => Ok(Kind::Segment),
            other => Err(Error::protocol(format!("unknown packet kind {other}"))),
        }
    }
}

/// Tag namespaces: user messages and the middleware's own collective traffic
/// never match each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    User = 0,
    Collective = 1,
}

impl Space {
    fn from_u8(v: u8) -> Result<Space> {
        match v {
            0 => Ok(Space::User),
            1 => Ok(Space::Collective),
            other => Err(Error::protocol(format!("unknown tag space {other}"))),
        }
    }
}

/// Size limits applied to everything decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one message.
    pub max_message_bytes: u64,
    /// Largest bundle (all messages of one transfer, with their entries).
    pub max_bundle_bytes: u64,
    /// Largest packet body; also the chunk size senders cut bundles into.
    pub max_chunk_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // Packets up to 256 MiB: a bundle cut into several packets is copied
        // once more when it is put back together, so the direct transports keep
        // bundles of up to that size (a 64 MiB message and its header) whole.
        Limits { max_message_bytes: 1 << 32, max_bundle_bytes: 1 << 34, max_chunk_bytes: 256 << 20 }
    }
}

/// A decoded, validated packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub src_pack: u32,
    pub seq: u64,
    pub total: u64,
    pub offset: u64,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut w = &mut out[..];
        w.put_slice(&MAGIC);
        w.put_u8(VERSION);
        w.put_u8(self.kind as u8);
        w.put_u32_le(self.src_pack);
        w.put_u64_le(self.seq);
        w.put_u64_le(self.total);
        w.put_u64_le(self.offset);
        w.put_u32_le(self.len);
        out
    }

    /// Decodes and validates a header against `limits`.
    pub fn decode(mut buf: &[u8], limits: &Limits) -> Result<Header> {
        if buf.len() < HEADER_LEN {
            return Err(Error::protocol(format!("packet of {} bytes is shorter than a header", buf.len())));
        }
        if buf[..2] != MAGIC {
            return Err(Error::protocol("bad magic: not a Volley packet"));
        }
        buf.advance(2);
        let version = buf.get_u8();
        if version != VERSION {
            return Err(Error::protocol(format!("packet version {version}, this build speaks {VERSION}")));
        }
        let kind = Kind::from_u8(buf.get_u8())?;
        let header = Header {
            kind,
            src_pack: buf.get_u32_le(),
            seq: buf.get_u64_le(),
            total: buf.get_u64_le(),
            offset: buf.get_u64_le(),
            len: buf.get_u32_le(),
        };
        if header.total > limits.max_bundle_bytes {
            return Err(Error::TooLarge { what: "bundle", size: header.total, limit: limits.max_bundle_bytes });
        }
        if header.len > limits.max_chunk_bytes {
            return Err(Error::TooLarge {
                what: "packet",
                size: header.len as u64,
                limit: limits.max_chunk_bytes as u64,
            });
        }
        let end = header.offset.checked_add(header.len as u64);
        if end.is_none_or(|end| end > header.total) {
            return Err(Error::protocol(format!(
                "chunk at offset {} of {} bytes overruns its bundle of {} bytes",
                header.offset, header.len, header.total
            )));
        }
        if header.len == 0 && header.total != 0 {
            return Err(Error::protocol("empty chunk of a non-empty bundle"));
        }
        match kind {
            Kind::Bye | Kind::Fin if header.total != 0 => {
                return Err(Error::protocol("goodbye packet with a body"));
            }
            Kind::Abort if header.total as usize > MAX_REASON + 4 || header.len as u64 != header.total => {
                return Err(Error::protocol("abort packet must be one small chunk"));
            }
            Kind::Segment if header.len != SEGMENT_LEN || header.total != SEGMENT_LEN as u64 => {
                return Err(Error::protocol("shared memory segment packet of the wrong size"));
            }
            _ => {}
        }
        Ok(header)
    }
}

/// Splits a whole packet (header and body in one buffer, as brokers carry it).
pub(crate) fn split_packet(mut packet: Bytes, limits: &Limits) -> Result<(Header, Bytes)> {
    let header = packet.split_to(HEADER_LEN.min(packet.len()));
    join_packet(&header, packet, limits)
}

/// A packet whose header and body came apart (a broker message's header
/// field and its payload).
pub(crate) fn join_packet(header: &[u8], body: Bytes, limits: &Limits) -> Result<(Header, Bytes)> {
    let header = Header::decode(header, limits)?;
    if body.len() != header.len as usize {
        return Err(Error::protocol(format!("packet says {} body bytes but carries {}", header.len, body.len())));
    }
    Ok((header, body))
}

/// A packet ready to send: header plus body segments (slices of the caller's
/// buffers, never copied here).
#[derive(Debug, Clone)]
pub(crate) struct OutPacket {
    pub header: Header,
    pub body: Vec<Bytes>,
}

impl OutPacket {
    /// The body in one buffer: the one slice it usually is, without a copy.
    pub fn body_contiguous(&self) -> Bytes {
        match self.body.as_slice() {
            [one] => one.clone(),
            parts => {
                let mut buf = BytesMut::with_capacity(self.header.len as usize);
                for seg in parts {
                    buf.put_slice(seg);
                }
                buf.freeze()
            }
        }
    }

    /// Header and body in one buffer, for transports that need one value per packet.
    pub fn to_contiguous(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + self.header.len as usize);
        buf.put_slice(&self.header.encode());
        for seg in &self.body {
            buf.put_slice(seg);
        }
        buf.freeze()
    }
}

/// One message inside a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub src: u32,
    pub dst: u32,
    pub space: Space,
    pub tag: u64,
    pub payload: Bytes,
}

/// Encodes a bundle as segments: the entry table, then each payload as is.
pub(crate) fn encode_bundle(entries: &[Entry]) -> Vec<Bytes> {
    let mut table = BytesMut::with_capacity(4 + entries.len() * ENTRY_LEN);
    table.put_u32_le(entries.len() as u32);
    for e in entries {
        table.put_u32_le(e.src);
        table.put_u32_le(e.dst);
        table.put_u8(e.space as u8);
        table.put_u64_le(e.tag);
        table.put_u64_le(e.payload.len() as u64);
    }
    let mut segments = Vec::with_capacity(1 + entries.len());
    segments.push(table.freeze());
    segments.extend(entries.iter().filter(|e| !e.payload.is_empty()).map(|e| e.payload.clone()));
    segments
}

/// Decodes a bundle body; payloads are zero-copy slices of `body`.
pub(crate) fn decode_bundle(body: Bytes, limits: &Limits) -> Result<Vec<Entry>> {
    let mut table = &body[..];
    if table.len() < 4 {
        return Err(Error::protocol("bundle shorter than its entry count"));
    }
    let count = table.get_u32_le() as usize;
    let table_len = count
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= body.len())
        .ok_or_else(|| Error::protocol(format!("bundle claims {count} entries but has {} bytes", body.len())))?;
    let mut entries = Vec::with_capacity(count);
    let mut offset = table_len;
    for _ in 0..count {
        let src = table.get_u32_le();
        let dst = table.get_u32_le();
        let space = Space::from_u8(table.get_u8())?;
        let tag = table.get_u64_le();
        let len = table.get_u64_le();
        if len > limits.max_message_bytes {
            return Err(Error::TooLarge { what: "message", size: len, limit: limits.max_message_bytes });
        }
        let end = (offset as u64)
            .checked_add(len)
            .filter(|&end| end <= body.len() as u64)
            .ok_or_else(|| Error::protocol("bundle entry runs past the end of its bundle"))? as usize;
        entries.push(Entry { src, dst, space, tag, payload: body.slice(offset..end) });
        offset = end;
    }
    if offset != body.len() {
        return Err(Error::protocol(format!("bundle has {} trailing bytes", body.len() - offset)));
    }
    Ok(entries)
}

/// Cuts a body (as segments) into packets of at most `chunk` bytes.
pub(crate) fn packetize(kind: Kind, src_pack: u32, seq: u64, body: Vec<Bytes>, chunk: u32) -> Vec<OutPacket> {
    let total: u64 = body.iter().map(|b| b.len() as u64).sum();
    let chunk = chunk.max(1) as u64;
    if total <= chunk {
        let header = Header { kind, src_pack, seq, total, offset: 0, len: total as u32 };
        return vec![OutPacket { header, body }];
    }
    let mut packets = Vec::with_capacity(total.div_ceil(chunk) as usize);
    let mut current: Vec<Bytes> = Vec::new();
    let mut current_len = 0u64;
    let mut offset = 0u64;
    for mut seg in body {
        while !seg.is_empty() {
            let room = (chunk - current_len) as usize;
            let take = room.min(seg.len());
            current.push(seg.split_to(take));
            current_len += take as u64;
            if current_len == chunk {
                let header = Header { kind, src_pack, seq, total, offset, len: current_len as u32 };
                packets.push(OutPacket { header, body: std::mem::take(&mut current) });
                offset += current_len;
                current_len = 0;
            }
        }
    }
    if current_len > 0 {
        let header = Header { kind, src_pack, seq, total, offset, len: current_len as u32 };
        packets.push(OutPacket { header, body: current });
    }
    packets
}

/// Body of an abort packet: the failed rank and why.
pub(crate) fn encode_abort(rank: u32, reason: &str) -> Bytes {
    let mut cut = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut buf = BytesMut::with_capacity(4 + cut);
    buf.put_u32_le(rank);
    buf.put_slice(&reason.as_bytes()[..cut]);
    buf.freeze()
}

pub(crate) fn decode_abort(body: &[u8]) -> Result<(u32, String)> {
    if body.len() < 4 {
        return Err(Error::protocol("abort packet without a rank"));
    }
    let rank = u32::from_le_bytes(body[..4].try_into().expect("4 bytes"));
    Ok((rank, String::from_utf8_lossy(&body[4..]).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(src: u32, dst: u32, tag: u64, payload: &'static [u8]) -> Entry {
        Entry { src, dst, space: Space::User, tag, payload: Bytes::from_static(payload) }
    }

    fn join(packets: &[OutPacket]) -> Bytes {
        let mut buf = BytesMut::new();
        for p in packets {
            for s in &p.body {
                buf.put_slice(s);
            }
        }
        buf.freeze()
    }

    #[test]
    fn bundle_round_trips_through_packets() {
        let entries = vec![entry(0, 5, 7, b"hello"), entry(1, 6, 7, b""), entry(2, DST_WHOLE_PACK, 9, b"world!")];
        let packets = packetize(Kind::Data, 3, 11, encode_bundle(&entries), 8);
        assert!(packets.len() > 1);
        for p in &packets {
            let decoded = Header::decode(&p.header.encode(), &Limits::default()).unwrap();
            assert_eq!(decoded, p.header);
            assert!(decoded.len <= 8);
        }
        assert_eq!(decode_bundle(join(&packets), &Limits::default()).unwrap(), entries);
    }

    #[test]
    fn oversized_claims_are_refused_before_allocation() {
        let limits = Limits { max_message_bytes: 10, max_bundle_bytes: 100, max_chunk_bytes: 50 };
        let h = Header { kind: Kind::Data, src_pack: 0, seq: 0, total: 1000, offset: 0, len: 10 };
        assert!(matches!(Header::decode(&h.encode(), &limits), Err(Error::TooLarge { .. })));
        let big = encode_bundle(&[entry(0, 1, 0, b"this payload is too long")]);
        assert!(matches!(
            decode_bundle(join(&[OutPacket { header: h, body: big }]), &limits),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn abort_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON);
        let body = encode_abort(3, &reason);
        let (rank, text) = decode_abort(&body).unwrap();
        assert_eq!(rank, 3);
        assert!(text.len() <= MAX_REASON && text.chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn header_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Header::decode(&bytes, &Limits::default());
        }

        #[test]
        fn packet_splitter_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), valid_prefix in any::<bool>()) {
            if valid_prefix && bytes.len() >= 4 {
                bytes[..2].copy_from_slice(&MAGIC);
                bytes[2] = VERSION;
                bytes[3] %= 4;
            }
            let _ = split_packet(Bytes::from(bytes), &Limits::default());
        }

        #[test]
        fn bundle_decoder_never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let len = bytes.len();
            if let Ok(entries) = decode_bundle(Bytes::from(bytes), &Limits::default()) {
                let total: usize = entries.iter().map(|e| e.payload.len()).sum();
                prop_assert!(total <= len);
            }
        }

        #[test]
        fn any_bundle_round_trips_at_any_chunk_size(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            chunk in 1u32..100,
        ) {
            let entries: Vec<Entry> = payloads.into_iter().enumerate().map(|(i, p)| Entry {
                src: i as u32, dst: (i * 7) as u32, space: Space::Collective, tag: i as u64 * 3, payload: Bytes::from(p),
            }).collect();
            let packets = packetize(Kind::Data, 1, 2, encode_bundle(&entries), chunk);
            let mut expected_offset = 0;
            for p in &packets {
                prop_assert_eq!(p.header.offset, expected_offset);
                prop_assert!(p.header.len <= chunk);
                expected_offset += p.header.len as u64;
                let (h, body) = split_packet(p.to_contiguous(), &Limits::default()).unwrap();
                prop_assert_eq!(h, p.header);
                prop_assert_eq!(body.len(), h.len as usize);
            }
            prop_assert_eq!(decode_bundle(join(&packets), &Limits::default()).unwrap(), entries);
        }
    }
}
