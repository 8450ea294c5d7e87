//! Same-host packs through shared memory (`shm` mode).
//!
//! Packs in `shm` mode are connected by Unix sockets exactly as in `uds`
//! mode, and small packets still go through them. A packet of at least
//! [`SHM_MIN`] bytes does not: the sender copies it into a *segment* (a
//! memfd both packs map, the only copy) and sends a descriptor on the pair's
//! first connection. The receiver hands the packet on as [`Bytes`] pointing
//! into its mapping of the segment, so it copies nothing; when the last of
//! those `Bytes` is dropped, the segment's state word goes back to free and
//! the sender reuses it. Through the kernel, the same packet costs two
//! copies (into the socket buffer, out of it) and a wake-up per socket
//! buffer's worth.
//!
//! A segment is announced once, when the sender creates it: its descriptor
//! crosses with `SCM_RIGHTS` attached to an announcement packet on the same
//! connection as the packets that use it, so the receiver always knows a
//! segment before its first use. The receiver maps it and closes the
//! descriptor; the memory lives as long as either side maps it.
//!
//! Making a segment is the expensive part (the kernel allocates and zeroes
//! every page: 25-30 ms for 64 MiB here, about three copies' worth), so a
//! segment made while another of its size is still busy comes with a
//! *spare* of the same size, announced with it. A sender that found its
//! only segment busy (the receiver still holds the last packet, or keeps
//! one) will soon need a third, and this way it has it before its pace
//! matters rather than in the middle of a stream.
//!
//! Trust: only the two packs of the pair ever hold a segment (the
//! descriptor crosses the burst's authenticated connection, never a file
//! name), and a segment must be sealed against shrinking, so a peer cannot
//! make the receiver's reads fault by truncating it. A peer pack is part of
//! the same burst (the same tenant): it could change a packet it already
//! sent, as it could send different bytes in the first place.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::Bytes;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use crate::mailbox::lock;
use crate::wire::{Header, Kind, SEGMENT_LEN};

/// Packets from this size up cross through a segment; smaller ones are
/// cheaper through the socket than a descriptor plus a segment's bookkeeping.
pub(crate) const SHM_MIN: usize = 64 << 10;

/// The most segment memory a pack keeps for one peer; beyond it (a receiver
/// that holds on to what it got) packets go through the socket again.
const MAX_PER_PEER: usize = 1 << 30;

/// The most segments a pack keeps for one peer (each is a mapping on both
/// sides, and a process has a limited number of them).
const MAX_SEGMENTS: usize = 256;

/// Descriptors a receiver holds before their announcements are parsed: an
/// honest peer's next announcement can arrive in the read that completes
/// the previous one, never more.
const MAX_PENDING_FDS: usize = 2;

/// Segments are sized in these steps, so a little larger packet reuses one.
const GRANULE: usize = 1 << 20;

/// A segment's first cache line holds its state; the packet follows it.
const DATA_OFFSET: usize = 64;
const FREE: u32 = 0;
const BUSY: u32 = 1;

/// The body of a `Shm` packet: segment id and a reserved word.
pub(crate) const DESCRIPTOR_LEN: usize = 8;
const ANNOUNCE: u32 = 1;
const RETIRE: u32 = 2;

/// A shared mapping of a whole segment, unmapped when dropped.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; the state word is accessed
// atomically, and the data only by whoever holds the segment as busy (the
// sender while writing, then the receiver's `Bytes` while reading).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    fn map(fd: impl AsFd, len: usize) -> nix::Result<Mapping> {
        let size = NonZeroUsize::new(len).ok_or(nix::Error::EINVAL)?;
        // SAFETY: a new shared mapping of `len` bytes of the file, owned by
        // this value alone; MAP_POPULATE sets its pages up now rather than
        // by a fault per page on first use.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
                fd,
                0,
            )?
        };
        Ok(Mapping { ptr: ptr.cast(), len })
    }

    fn state(&self) -> &AtomicU32 {
        // SAFETY: the mapping is at least DATA_OFFSET bytes, page aligned,
        // and lives as long as `self`.
        unsafe { &*(self.ptr.as_ptr() as *const AtomicU32) }
    }

    fn capacity(&self) -> usize {
        self.len - DATA_OFFSET
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: DATA_OFFSET is within the mapping (len > DATA_OFFSET).
        unsafe { self.ptr.as_ptr().add(DATA_OFFSET) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this address and length,
        // and nothing borrows it any more (every borrower holds an Arc).
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// One segment as its sender sees it.
struct Segment {
    id: u32,
    map: Arc<Mapping>,
}

/// A segment made here whose descriptor goes to the receiver.
pub(crate) struct Announced {
    pub id: u32,
    pub fd: OwnedFd,
}

/// The segments a pack sends one peer through.
pub(crate) struct Outbound {
    state: std::sync::Mutex<OutboundState>,
}

struct OutboundState {
    segments: Vec<Segment>,
    next_id: u32,
    bytes: usize,
    /// The most segment bytes kept for this peer.
    limit: usize,
    /// Creating segments failed (no memfd in this environment): stop trying.
    unavailable: bool,
    /// Segments unmapped here that the receiver has not been told of yet.
    retiring: Vec<u32>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::with_limit(MAX_PER_PEER)
    }
}

/// A packet's place in a segment, as the sender hands it to the connection.
pub(crate) struct Placed {
    pub id: u32,
    /// New segments (the packet's own, and a spare), to announce with their
    /// descriptors before the packet's descriptor.
    pub announce: Vec<Announced>,
    /// Segments the receiver should unmap (they were free and made room).
    pub retired: Vec<u32>,
}

impl Outbound {
    fn with_limit(limit: usize) -> Self {
        let state = OutboundState {
            segments: Vec::new(),
            next_id: 0,
            bytes: 0,
            limit,
            unavailable: false,
            retiring: Vec::new(),
        };
        Outbound { state: std::sync::Mutex::new(state) }
    }

    /// Copies `body` (`len` bytes) into a free segment, creating one if
    /// none fits; `None` sends the packet through the socket instead.
    pub fn place(&self, body: &[Bytes], len: usize) -> Option<Placed> {
        debug_assert_eq!(body.iter().map(Bytes::len).sum::<usize>(), len);
        let (placed, map) = lock(&self.state).reserve(len)?;
        // SAFETY: the segment is BUSY for us alone, and `len` (the sum of the
        // body's lengths) fits its capacity.
        unsafe { copy_in(body, len, map.data()) };
        Some(placed)
    }

    /// Spares whose announcement is written: from now on any sender may
    /// place a packet in them (its descriptor comes after the announcement).
    pub fn announced(&self, spares: &[u32]) {
        let state = lock(&self.state);
        for seg in state.segments.iter().filter(|s| spares.contains(&s.id)) {
            seg.map.state().store(FREE, Ordering::Release);
        }
    }

    /// Forgets segments whose packet or announcement may not have reached
    /// the receiver (the write failed or was given up): the receiver may not
    /// even know them, so they are never used again.
    pub fn discard(&self, ids: &[u32]) {
        let mut state = lock(&self.state);
        for id in ids {
            if let Some(i) = state.segments.iter().position(|s| s.id == *id) {
                let seg = state.segments.swap_remove(i);
                state.bytes -= seg.map.len;
            }
        }
    }
}

impl OutboundState {
    /// A BUSY segment of at least `len` bytes, where the packet will go.
    fn reserve(&mut self, len: usize) -> Option<(Placed, Arc<Mapping>)> {
        // The smallest free segment that fits.
        let free = self
            .segments
            .iter()
            .filter(|s| s.map.capacity() >= len)
            .filter(|s| s.map.state().load(Ordering::Acquire) == FREE)
            .min_by_key(|s| s.map.capacity())
            .map(|s| s.id);
        if let Some(id) = free {
            let seg = self.segments.iter().find(|s| s.id == id)?;
            seg.map.state().store(BUSY, Ordering::Relaxed);
            let placed = Placed { id, announce: Vec::new(), retired: std::mem::take(&mut self.retiring) };
            return Some((placed, seg.map.clone()));
        }
        let size = (len + DATA_OFFSET).div_ceil(GRANULE) * GRANULE;
        // A busy segment that would have fit: the receiver holds packets
        // (see the module's note on spares).
        let outgrown = self.segments.iter().any(|s| s.map.capacity() >= len);
        if self.unavailable || !self.make_room(size) {
            return None;
        }
        let (map, fd) = match self.add(size) {
            Ok(made) => made,
            Err(err) => {
                tracing::warn!(%err, "no shared memory segment: packets go through the socket");
                self.unavailable = true;
                return None;
            }
        };
        let mut announce = vec![fd];
        // The spare only takes room that is free: it retires nothing.
        if outgrown && self.bytes + size <= self.limit && self.segments.len() < MAX_SEGMENTS {
            // One that cannot be made is only a head start missed.
            match self.add(size) {
                Ok((_, fd)) => announce.push(fd),
                Err(err) => tracing::debug!(%err, "no spare shared memory segment"),
            }
        }
        let placed = Placed { id: announce[0].id, announce, retired: std::mem::take(&mut self.retiring) };
        Some((placed, map))
    }

    /// A new segment of `size` bytes in the pool, BUSY: its packet's, or a
    /// spare that no other sender may use (or retire) before its
    /// announcement is written (see [`Outbound::announced`]).
    fn add(&mut self, size: usize) -> nix::Result<(Arc<Mapping>, Announced)> {
        let (fd, map) = create(size)?;
        let map = Arc::new(map);
        map.state().store(BUSY, Ordering::Relaxed);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.bytes += size;
        self.segments.push(Segment { id, map: map.clone() });
        Ok((map, Announced { id, fd }))
    }

    /// Unmaps free segments until `size` more bytes fit the limits (the
    /// receiver is told with the next packet); false, with nothing unmapped,
    /// if they would not fit even then (the receiver holds the rest).
    fn make_room(&mut self, size: usize) -> bool {
        let free: Vec<usize> = (0..self.segments.len())
            .filter(|&i| self.segments[i].map.state().load(Ordering::Acquire) == FREE)
            .collect();
        let free_bytes: usize = free.iter().map(|&i| self.segments[i].map.len).sum();
        if self.bytes - free_bytes + size > self.limit || self.segments.len() - free.len() >= MAX_SEGMENTS {
            return false;
        }
        // Highest index first, so the indices left stay valid.
        for i in free.into_iter().rev() {
            if self.bytes + size <= self.limit && self.segments.len() < MAX_SEGMENTS {
                break;
            }
            let seg = self.segments.swap_remove(i);
            self.bytes -= seg.map.len;
            self.retiring.push(seg.id);
        }
        true
    }
}

/// A copy this large is split between two threads: one core's copy does not
/// reach the memory's bandwidth (measured here: 9-10 GB/s for one thread,
/// 17-19 GB/s for two), and while the sender copies the receiver waits.
const SPLIT_COPY: usize = 4 << 20;

/// Copies the concatenation of `body` (`len` bytes) to `dst`.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes that nothing else touches.
unsafe fn copy_in(body: &[Bytes], len: usize, dst: *mut u8) {
    /// Bytes `from..to` of the concatenation, to the same offsets of `dst`.
    fn range(body: &[Bytes], from: usize, to: usize, dst: usize) {
        let mut start = 0;
        for seg in body {
            let (lo, hi) = (from.max(start), to.min(start + seg.len()));
            if lo < hi {
                // SAFETY: `copy_in`'s caller vouches for `dst..dst + len`, and
                // `lo..hi` lies within it and within this segment.
                unsafe {
                    std::ptr::copy_nonoverlapping(seg.as_ptr().add(lo - start), (dst as *mut u8).add(lo), hi - lo)
                };
            }
            start += seg.len();
        }
    }
    // (The address crosses to the helper thread as a number.)
    let dst = dst as usize;
    if len < SPLIT_COPY {
        return range(body, 0, len, dst);
    }
    let half = len / 2;
    std::thread::scope(|scope| {
        // Without a thread (a pack's process limit), this thread copies it all.
        let helper = std::thread::Builder::new().spawn_scoped(scope, || range(body, half, len, dst));
        range(body, 0, if helper.is_ok() { half } else { len }, dst);
    });
}

/// A new sealed segment of `size` bytes, mapped, state FREE.
fn create(size: usize) -> nix::Result<(OwnedFd, Mapping)> {
    let fd = memfd_create(c"volley-shm", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    nix::unistd::ftruncate(&fd, size as i64)?;
    // Sealed against resizing: the receiver relies on it (a shrunk file
    // would make its reads fault).
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL))?;
    let map = Mapping::map(&fd, size)?;
    Ok((fd, map))
}

/// The announcement (or retirement) of segment `id`, as a packet body.
pub(crate) fn segment_body(id: u32, announce: bool) -> [u8; SEGMENT_LEN as usize] {
    let mut body = [0u8; SEGMENT_LEN as usize];
    body[..4].copy_from_slice(&id.to_le_bytes());
    body[4..].copy_from_slice(&(if announce { ANNOUNCE } else { RETIRE }).to_le_bytes());
    body
}

/// The descriptor of a packet in segment `id`.
pub(crate) fn descriptor(id: u32) -> [u8; DESCRIPTOR_LEN] {
    let mut body = [0u8; DESCRIPTOR_LEN];
    body[..4].copy_from_slice(&id.to_le_bytes());
    body
}

/// The segments of one peer, as the receiving connection knows them.
#[derive(Default)]
pub(crate) struct Inbound {
    /// Descriptors received and not yet claimed by an announcement.
    fds: VecDeque<OwnedFd>,
    maps: HashMap<u32, Arc<Received>>,
    /// Bytes of all mappings, held to the sender's own limit.
    mapped: usize,
}

/// A segment as its receiver maps it.
struct Received {
    map: Mapping,
    /// Its packet is out as `Bytes`: a second descriptor naming it before
    /// they are dropped is an error, not a second reader of changing bytes.
    lent: AtomicBool,
}

impl Inbound {
    /// A `Segment` packet: maps the announced segment (with the next
    /// descriptor received), or forgets a retired one.
    pub fn segment(&mut self, body: &[u8]) -> Result<(), String> {
        let (id, op) = split_words(body)?;
        match op {
            ANNOUNCE => {
                let fd = self.fds.pop_front().ok_or("a shared memory segment was announced without its descriptor")?;
                if self.maps.len() >= MAX_SEGMENTS || self.maps.contains_key(&id) {
                    return Err(format!("shared memory segment {id} announced twice, or more than {MAX_SEGMENTS}"));
                }
                let map = open(fd, MAX_PER_PEER - self.mapped)
                    .map_err(|e| format!("cannot map a shared memory segment: {e}"))?;
                self.mapped += map.len;
                self.maps.insert(id, Arc::new(Received { map, lent: AtomicBool::new(false) }));
                Ok(())
            }
            RETIRE => {
                let seg = self.maps.remove(&id).ok_or_else(|| format!("unknown shared memory segment {id}"))?;
                self.mapped -= seg.map.len;
                Ok(())
            }
            other => Err(format!("unknown shared memory segment operation {other}")),
        }
    }

    /// Keeps descriptors that arrived with the bytes: one per message, at
    /// most [`MAX_PENDING_FDS`] unclaimed (more is not an honest peer).
    pub fn received(&mut self, fds: Vec<OwnedFd>) -> Result<(), String> {
        if fds.len() > 1 || self.fds.len() + fds.len() > MAX_PENDING_FDS {
            return Err("the peer passed descriptors that no segment announcement claims".into());
        }
        self.fds.extend(fds);
        Ok(())
    }

    /// A `Shm` packet: the data packet it stands for, its body in the mapping.
    pub fn open(&self, header: Header, body: &[u8]) -> Result<(Header, Bytes), String> {
        let (id, _) = split_words(body)?;
        let seg = self.maps.get(&id).ok_or_else(|| format!("unknown shared memory segment {id}"))?;
        let len = header.len as usize;
        if len > seg.map.capacity() {
            return Err(format!("a packet of {len} bytes overruns shared memory segment {id}"));
        }
        if seg.lent.swap(true, Ordering::Acquire) {
            return Err(format!("shared memory segment {id} reused while its packet is still held"));
        }
        let bytes = Bytes::from_owner(Lent { seg: seg.clone(), len });
        Ok((Header { kind: Kind::Data, ..header }, bytes))
    }
}

fn split_words(body: &[u8]) -> Result<(u32, u32), String> {
    let word = |i: usize| body.get(i..i + 4).and_then(|w| w.try_into().ok()).map(u32::from_le_bytes);
    match (word(0), word(4)) {
        (Some(a), Some(b)) if body.len() == 8 => Ok((a, b)),
        _ => Err(format!("shared memory packet body of {} bytes, expected 8", body.len())),
    }
}

/// Maps a segment received from a peer, at most `room` bytes, after
/// checking that reading it cannot fault: a memfd on shmem (not hugetlbfs,
/// whose pages a hole punched by the peer could take away) sealed against
/// shrinking.
fn open(fd: OwnedFd, room: usize) -> nix::Result<Mapping> {
    let seals = SealFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GET_SEALS)?);
    let shmem = nix::sys::statfs::fstatfs(&fd)?.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC;
    if !seals.contains(SealFlag::F_SEAL_SHRINK) || !shmem {
        return Err(nix::Error::EPERM);
    }
    let size = nix::sys::stat::fstat(&fd)?.st_size as usize;
    if size <= DATA_OFFSET || size > room {
        return Err(nix::Error::EFBIG);
    }
    Mapping::map(&fd, size)
}

/// A received packet's bytes, in the segment until the last `Bytes` goes.
struct Lent {
    seg: Arc<Received>,
    len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` was checked against the capacity; the segment stays
        // BUSY (the sender does not touch it) until this value is dropped.
        unsafe { std::slice::from_raw_parts(self.seg.map.data(), self.len) }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.seg.lent.store(false, Ordering::Release);
        self.seg.map.state().store(FREE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32) -> Header {
        Header { kind: Kind::Shm, src_pack: 1, seq: 0, total: len as u64, offset: 0, len }
    }

    #[test]
    fn a_segment_is_reused_once_the_receiver_drops_the_bytes() {
        let out = Outbound::default();
        let mut inbound = Inbound::default();
        let body = vec![Bytes::from(vec![7u8; 100_000]), Bytes::from(vec![8u8; 5])];
        let first = out.place(&body, 100_005).unwrap();
        assert_eq!(first.announce.len(), 1, "the first segment comes alone");
        let announced = first.announce.into_iter().next().unwrap();
        assert_eq!(announced.id, first.id);
        inbound.received(vec![announced.fd]).unwrap();
        inbound.segment(&segment_body(first.id, true)).unwrap();
        let (h, got) = inbound.open(header(100_005), &descriptor(first.id)).unwrap();
        assert_eq!(h.kind, Kind::Data);
        assert!(got[..100_000].iter().all(|&b| b == 7) && got[100_000..] == [8; 5]);

        // Still held: the next packet needs a second segment, and a spare
        // of its size comes with it.
        let second = out.place(&body, 100_005).unwrap();
        assert_ne!(second.id, first.id);
        let ids: Vec<u32> = second.announce.iter().map(|a| a.id).collect();
        assert_eq!(ids.len(), 2, "the packet's segment and a spare");
        assert_eq!(ids[0], second.id);
        drop(got);
        // Released: the first one is reused, with no new descriptor.
        let third = out.place(&body, 100_005).unwrap();
        assert_eq!(third.id, first.id);
        assert!(third.announce.is_empty());
        // Until its announcement is written, no other sender may use the
        // spare (its descriptor could reach the receiver first).
        let meanwhile = out.place(&body, 100_005).unwrap();
        assert!(meanwhile.id != ids[1] && !meanwhile.announce.is_empty());
        // Announced: with the others busy, the spare is used, no new descriptor.
        out.announced(&[ids[1]]);
        let fourth = out.place(&body, 100_005).unwrap();
        assert_eq!(fourth.id, ids[1]);
        assert!(fourth.announce.is_empty() && fourth.retired.is_empty());
    }

    #[test]
    fn bad_announcements_and_descriptors_are_errors() {
        let mut inbound = Inbound::default();
        assert!(inbound.segment(&segment_body(3, true)).unwrap_err().contains("without its descriptor"));
        assert!(inbound.open(header(10), &descriptor(3)).unwrap_err().contains("unknown"));
        assert!(inbound.segment(&[1, 2, 3]).is_err());

        // A descriptor whose file can shrink under the mapping is refused.
        let unsealed = memfd_create(c"test", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&unsealed, 1 << 20).unwrap();
        inbound.received(vec![unsealed]).unwrap();
        assert!(inbound.segment(&segment_body(4, true)).unwrap_err().contains("cannot map"));

        // A packet longer than its segment is refused.
        let out = Outbound::default();
        let (placed, held) = deliver(&out, &mut inbound, 3);
        drop(held);
        assert!(inbound.open(header(GRANULE as u32), &descriptor(placed.id)).unwrap_err().contains("overruns"));
    }

    /// Places `len` bytes and hands the packet to `inbound`, which holds it.
    fn deliver(out: &Outbound, inbound: &mut Inbound, len: usize) -> (Placed, Bytes) {
        let placed = out.place(&[Bytes::from(vec![1u8; len])], len).unwrap();
        for new in &placed.announce {
            inbound.received(vec![new.fd.try_clone().unwrap()]).unwrap();
            inbound.segment(&segment_body(new.id, true)).unwrap();
        }
        for &id in &placed.retired {
            inbound.segment(&segment_body(id, false)).unwrap();
        }
        // Written, as the connection does: the spares may be used now.
        let spares: Vec<u32> = placed.announce.iter().map(|a| a.id).filter(|&id| id != placed.id).collect();
        out.announced(&spares);
        let (_, held) = inbound.open(header(len as u32), &descriptor(placed.id)).unwrap();
        (placed, held)
    }

    #[test]
    fn free_segments_are_retired_to_stay_within_the_limit() {
        let out = Outbound::with_limit(10 * GRANULE);
        let mut inbound = Inbound::default();
        let big = 4 * GRANULE - DATA_OFFSET;
        let (a, held_a) = deliver(&out, &mut inbound, big);
        let (b, _held_b) = deliver(&out, &mut inbound, big);
        // Both held: a third does not fit, so it goes through the socket.
        assert!(out.place(&[Bytes::from(vec![1u8; big])], big).is_none());
        drop(held_a);
        // Still too large even with the free one gone: nothing is retired.
        let seven = 7 * GRANULE - DATA_OFFSET;
        assert!(out.place(&[Bytes::from(vec![1u8; seven])], seven).is_none());
        // Too large for the free segment, and room once it is gone: it is
        // retired, and the receiver hears of it with this packet.
        let (c, _held_c) = deliver(&out, &mut inbound, 5 * GRANULE - DATA_OFFSET);
        assert_eq!(c.retired, vec![a.id], "the free segment made room");
        assert!(c.announce.len() == 1 && c.id != b.id, "no room for a spare");
        assert_eq!(inbound.maps.len(), 2, "the receiver unmapped the retired one");
    }

    #[test]
    fn a_hostile_peer_cannot_make_the_receiver_map_too_much_or_read_twice() {
        let mut inbound = Inbound::default();
        // A sealed but huge (sparse) segment is refused before it is mapped.
        let huge = memfd_create(c"test", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).unwrap();
        nix::unistd::ftruncate(&huge, 2 * MAX_PER_PEER as i64).unwrap();
        fcntl(&huge, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
        inbound.received(vec![huge]).unwrap();
        assert!(inbound.segment(&segment_body(1, true)).unwrap_err().contains("cannot map"));

        // Descriptors no announcement claims are refused.
        let fd = || memfd_create(c"test", MFdFlags::MFD_CLOEXEC).unwrap();
        assert!(inbound.received(vec![fd(), fd()]).is_err());
        inbound.received(vec![fd()]).unwrap();
        inbound.received(vec![fd()]).unwrap();
        assert!(inbound.received(vec![fd()]).is_err());

        // A second descriptor for a segment whose packet is still held.
        let out = Outbound::default();
        let mut inbound = Inbound::default();
        let (placed, held) = deliver(&out, &mut inbound, 100_000);
        let again = inbound.open(header(100_000), &descriptor(placed.id));
        assert!(again.unwrap_err().contains("still held"));
        drop(held);
        assert!(inbound.open(header(100_000), &descriptor(placed.id)).is_ok());
    }

    #[test]
    fn a_discarded_segment_is_never_used_again() {
        let out = Outbound::default();
        let first = out.place(&[Bytes::from(vec![1u8; 100_000])], 100_000).unwrap();
        out.discard(&[first.id]);
        let next = out.place(&[Bytes::from(vec![1u8; 100_000])], 100_000).unwrap();
        assert_ne!(next.id, first.id);
        assert_eq!(next.announce.len(), 1, "a new segment, announced");
    }
}
