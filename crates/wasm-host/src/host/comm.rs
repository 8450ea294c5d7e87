//! The worker's communicator as host functions.
//!
//! Messages carry one byte ahead of the payload, which the guest never sees:
//! [`INLINE`], the payload follows; or [`HANDED`], the payload stayed where
//! the sender had it in the pack's shared memory and the message names it
//! (address, length, capacity): the receiver takes over the sender's buffer,
//! so a message between two workers of one pack is never copied by the host
//! (the guest SDK copies a borrowed buffer once, into the buffer it hands over).
//! Between packs a message is copied out of the memory once and travels like
//! any other. `all_to_all_vec` hands its parts over the same way.

use bytes::Bytes;
use volley_comm::{Comm, Element, Op};
use wasmtime::{Caller, Linker};

use super::{FAILED, Host, memory};
use crate::host::memory::{read, read_into, read_u32s, write_u32s};

/// The payload follows.
const INLINE: u8 = 0;
/// The payload is a buffer of the pack's memory, handed over.
const HANDED: u8 = 1;
/// `volley.recv`'s source for any sender.
pub(super) const ANY: i32 = -1;

/// A message naming a buffer of the pack's memory, handed over.
fn handle(ptr: u32, len: u32, cap: u32) -> Bytes {
    let mut m = Vec::with_capacity(13);
    m.push(HANDED);
    [ptr, len, cap].iter().for_each(|v| m.extend_from_slice(&v.to_le_bytes()));
    Bytes::from(m)
}

/// What a message received carries.
enum Received {
    /// A buffer handed over: address, length, capacity.
    Handed(u32, u32, u32),
    /// The payload itself.
    Inline(Bytes),
}

fn unwrap(message: &Bytes) -> Option<Received> {
    match message.first() {
        Some(&HANDED) if message.len() == 13 => {
            let word = |i: usize| u32::from_le_bytes([message[i], message[i + 1], message[i + 2], message[i + 3]]);
            Some(Received::Handed(word(1), word(5), word(9)))
        }
        Some(&INLINE) => Some(Received::Inline(message.slice(1..))),
        _ => None,
    }
}

/// Hands the guest the message received from `from` (pending reply 0):
/// writes (kind, source, address, length, capacity) at `out`: kind 0, the
/// payload is the pending reply; kind 1, the buffer handed over.
pub(super) fn deliver(caller: &mut Caller<'_, Host>, from: usize, out: i32) -> wasmtime::Result<i32> {
    let in_pack = caller.data().worker().is_ok_and(|w| w.comm().pack_ranks().contains(&from));
    let header = match caller.data().pending.first().and_then(unwrap) {
        // (Only a worker of this pack can hand over a buffer of its memory.)
        Some(Received::Handed(ptr, len, cap)) if in_pack => [1, from as u32, ptr, len, cap],
        Some(Received::Inline(payload)) => {
            let len = payload.len() as u32;
            caller.data_mut().pending = vec![payload];
            [0, from as u32, 0, len, 0]
        }
        _ => {
            return Ok(caller
                .data_mut()
                .refuse(FAILED, format!("rank {from} sent a message that is not a WebAssembly worker's")));
        }
    };
    write_u32s(&memory(caller), out as u32, &header)?;
    Ok(0)
}

/// A message with its header: the guest's bytes copied once.
pub(super) fn inline(caller: &Caller<'_, Host>, ptr: i32, len: i32) -> wasmtime::Result<Bytes> {
    // (Room is made by read_into, once it checked the bytes lie in the memory.)
    let mut message = vec![INLINE];
    read_into(&memory(caller), ptr as u32, len as u32, &mut message)?;
    Ok(message.into())
}

/// Runs `op` on the calling worker's communicator; its error becomes a status.
fn with_comm(caller: &mut Caller<'_, Host>, op: impl FnOnce(&Comm) -> Result<Vec<Bytes>, volley_comm::Error>) -> i32 {
    let outcome = match caller.data().worker() {
        Ok(w) => op(w.comm()),
        Err(e) => return caller.data_mut().refuse(FAILED, e),
    };
    match outcome {
        Ok(replies) => caller.data_mut().reply(replies),
        Err(e) => caller.data_mut().comm_failed(e),
    }
}

/// The byte strings at the guest's array of `n` (address, length) pairs.
fn parts(caller: &Caller<'_, Host>, array: i32, n: i32) -> wasmtime::Result<Vec<Bytes>> {
    let mem = memory(caller);
    let pairs = read_u32s(&mem, array as u32, (n as u32).saturating_mul(2))?;
    pairs.chunks_exact(2).map(|p| Ok(Bytes::from(read(&mem, p[0], p[1])?))).collect()
}

fn op(code: i32) -> Option<Op> {
    match code {
        0 => Some(Op::Sum),
        1 => Some(Op::Min),
        2 => Some(Op::Max),
        _ => None,
    }
}

/// Reduces `bytes` read as elements of `T` (to `root`, or to every worker).
/// Which reduction a guest asked for.
#[derive(Clone, Copy)]
enum Reduction {
    /// The result at this rank only.
    At(usize),
    /// The result everywhere.
    All,
    /// Rank r gets block r of the result.
    Scatter,
}

fn reduce_as<T: Element>(comm: &Comm, how: Reduction, bytes: &[u8], op: Op) -> Result<Vec<Bytes>, volley_comm::Error> {
    let values: Vec<T> = bytes.chunks_exact(T::SIZE).map(T::read).collect();
    let reduced = match how {
        Reduction::At(root) => comm.reduce(root, &values, op)?,
        Reduction::All => Some(comm.all_reduce(&values, op)?),
        Reduction::Scatter => Some(comm.reduce_scatter(&values, op)?),
    };
    Ok(reduced
        .map(|values| {
            let mut out = Vec::with_capacity(values.len() * T::SIZE);
            values.into_iter().for_each(|v| v.write(&mut out));
            Bytes::from(out)
        })
        .into_iter()
        .collect())
}

/// Element codes: f64, f32, i64, u64.
fn element_size(code: i32) -> Option<usize> {
    [8, 4, 8, 8].get(usize::try_from(code).ok()?).copied()
}

fn reduce(
    caller: &mut Caller<'_, Host>,
    how: Reduction,
    ptr: i32,
    len: i32,
    element: i32,
    code: i32,
) -> wasmtime::Result<i32> {
    let (Some(size), Some(op)) = (element_size(element), op(code)) else {
        return Ok(caller
            .data_mut()
            .refuse(FAILED, format!("no reduction of element kind {element} with operation {code}")));
    };
    if !(len as u32 as usize).is_multiple_of(size) {
        return Ok(caller.data_mut().refuse(FAILED, format!("{len} bytes are not whole elements of {size} bytes")));
    }
    let bytes = read(&memory(caller), ptr as u32, len as u32)?;
    Ok(with_comm(caller, |comm| match element {
        0 => reduce_as::<f64>(comm, how, &bytes, op),
        1 => reduce_as::<f32>(comm, how, &bytes, op),
        2 => reduce_as::<i64>(comm, how, &bytes, op),
        _ => reduce_as::<u64>(comm, how, &bytes, op),
    }))
}

pub(super) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap("volley", "send", |mut caller: Caller<'_, Host>, dst: i32, tag: i64, ptr: i32, len: i32| {
        let message = inline(&caller, ptr, len)?;
        wasmtime::Result::Ok(with_comm(&mut caller, |comm| {
            comm.send(dst as u32 as usize, tag as u64, message).map(|()| Vec::new())
        }))
    })?;
    // 1: the buffer was handed over (the receiver owns it now); 0: it was
    // copied (another pack's worker), the sender still owns it.
    linker.func_wrap(
        "volley",
        "send_owned",
        |mut caller: Caller<'_, Host>, dst: i32, tag: i64, ptr: i32, len: i32, cap: i32| -> wasmtime::Result<i32> {
            let in_pack = caller.data().worker().is_ok_and(|w| w.comm().pack_ranks().contains(&(dst as u32 as usize)));
            let (message, handed) =
                if in_pack { (handle(ptr as u32, len as u32, cap as u32), 1) } else { (inline(&caller, ptr, len)?, 0) };
            let status =
                with_comm(&mut caller, |comm| comm.send(dst as u32 as usize, tag as u64, message).map(|()| Vec::new()));
            Ok(if status < 0 { status } else { handed })
        },
    )?;
    // Writes (kind, source, address, length, capacity) at `out`: kind 0, the
    // payload is the pending reply; kind 1, the buffer handed over.
    linker.func_wrap(
        "volley",
        "recv",
        |mut caller: Caller<'_, Host>, src: i32, tag: i64, out: i32| -> wasmtime::Result<i32> {
            if src < ANY {
                return Ok(caller.data_mut().refuse(FAILED, format!("no rank {src}")));
            }
            let mut from = 0usize;
            let status = with_comm(&mut caller, |comm| {
                let (source, message) = if src == ANY {
                    comm.recv_any(tag as u64)?
                } else {
                    (src as usize, comm.recv(src as usize, tag as u64)?)
                };
                from = source;
                Ok(vec![message])
            });
            if status < 0 {
                return Ok(status);
            }
            deliver(&mut caller, from, out)
        },
    )?;
    // The worker's counters: local and remote messages and bytes, remote transfers (5 u64).
    linker.func_wrap("volley", "stats", |mut caller: Caller<'_, Host>, out: i32| -> wasmtime::Result<i32> {
        let stats = match caller.data().worker() {
            Ok(w) => w.comm().stats(),
            Err(e) => return Ok(caller.data_mut().refuse(FAILED, e)),
        };
        let values = [
            stats.local_messages,
            stats.local_bytes,
            stats.remote_messages,
            stats.remote_bytes,
            stats.remote_transfers,
        ];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        crate::host::memory::write(&memory(&caller), out as u32, &bytes)?;
        Ok(0)
    })?;
    // How long a blocking call may wait, in milliseconds.
    linker.func_wrap("volley", "op_timeout_ms", |caller: Caller<'_, Host>| -> i64 {
        caller.data().worker().map_or(-1, |w| w.comm().op_timeout().as_millis() as i64)
    })?;
    linker.func_wrap("volley", "barrier", |mut caller: Caller<'_, Host>| {
        with_comm(&mut caller, |c| c.barrier().map(|()| Vec::new()))
    })?;
    linker.func_wrap("volley", "abort", |caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let reason = String::from_utf8_lossy(&read(&memory(&caller), ptr as u32, len as u32)?).into_owned();
        if let Ok(w) = caller.data().worker() {
            w.comm().abort(&reason);
        }
        Ok(())
    })?;
    linker.func_wrap(
        "volley",
        "broadcast",
        |mut caller: Caller<'_, Host>, root: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let data = Bytes::from(read(&memory(&caller), ptr as u32, len as u32)?);
            Ok(with_comm(&mut caller, |c| c.broadcast(root as u32 as usize, data).map(|b| vec![b])))
        },
    )?;
    linker.func_wrap(
        "volley",
        "scatter",
        |mut caller: Caller<'_, Host>, root: i32, array: i32, n: i32| -> wasmtime::Result<i32> {
            let parts = parts(&caller, array, n)?;
            Ok(with_comm(&mut caller, |c| c.scatter(root as u32 as usize, parts).map(|b| vec![b])))
        },
    )?;
    linker.func_wrap(
        "volley",
        "gather",
        |mut caller: Caller<'_, Host>, root: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let data = Bytes::from(read(&memory(&caller), ptr as u32, len as u32)?);
            Ok(with_comm(&mut caller, |c| c.gather(root as u32 as usize, data).map(Option::unwrap_or_default)))
        },
    )?;
    linker.func_wrap(
        "volley",
        "all_gather",
        |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let data = Bytes::from(read(&memory(&caller), ptr as u32, len as u32)?);
            Ok(with_comm(&mut caller, |c| c.all_gather(data)))
        },
    )?;
    linker.func_wrap(
        "volley",
        "all_to_all",
        |mut caller: Caller<'_, Host>, array: i32, n: i32| -> wasmtime::Result<i32> {
            let parts = parts(&caller, array, n)?;
            Ok(with_comm(&mut caller, |c| c.all_to_all(parts)))
        },
    )?;
    // Parts given away: `array` holds n (address, length, capacity) triples;
    // a part for a worker of this pack is handed over, any other copied out
    // (the guest frees those). Writes (kind, address, length, capacity) per
    // part received at `out`: kind 1, a buffer handed over; kind 0, the
    // payload is pending reply i.
    linker.func_wrap(
        "volley",
        "all_to_all_vec",
        |mut caller: Caller<'_, Host>, array: i32, n: i32, out: i32| -> wasmtime::Result<i32> {
            let mem = memory(&caller);
            let triples = read_u32s(&mem, array as u32, (n as u32).saturating_mul(3))?;
            let ranks = match caller.data().worker() {
                Ok(w) => w.comm().pack_ranks(),
                Err(e) => return Ok(caller.data_mut().refuse(FAILED, e)),
            };
            let mut parts = Vec::with_capacity(triples.len() / 3);
            for (dst, t) in triples.chunks_exact(3).enumerate() {
                parts.push(if ranks.contains(&dst) {
                    handle(t[0], t[1], t[2])
                } else {
                    let mut m = vec![INLINE];
                    read_into(&mem, t[0], t[1], &mut m)?;
                    Bytes::from(m)
                });
            }
            let status = with_comm(&mut caller, |c| c.all_to_all(parts));
            if status < 0 {
                return Ok(status);
            }
            let mut words = Vec::with_capacity(status as usize * 4);
            let mut replies = Vec::with_capacity(status as usize);
            for (src, message) in caller.data().pending.iter().enumerate() {
                match unwrap(message) {
                    Some(Received::Handed(ptr, len, cap)) if ranks.contains(&src) => {
                        words.extend([1, ptr, len, cap]);
                        replies.push(Bytes::new());
                    }
                    Some(Received::Inline(payload)) => {
                        words.extend([0, 0, payload.len() as u32, 0]);
                        replies.push(payload);
                    }
                    _ => {
                        return Ok(caller
                            .data_mut()
                            .refuse(FAILED, format!("rank {src} sent a part that is not a WebAssembly worker's")));
                    }
                }
            }
            caller.data_mut().pending = replies;
            write_u32s(&mem, out as u32, &words)?;
            Ok(status)
        },
    )?;
    linker.func_wrap(
        "volley",
        "reduce",
        |mut caller: Caller<'_, Host>, root: i32, ptr: i32, len: i32, element: i32, op: i32| {
            reduce(&mut caller, Reduction::At(root as u32 as usize), ptr, len, element, op)
        },
    )?;
    for (name, how) in [("all_reduce", Reduction::All), ("reduce_scatter", Reduction::Scatter)] {
        linker.func_wrap(
            "volley",
            name,
            move |mut caller: Caller<'_, Host>, ptr: i32, len: i32, element: i32, op: i32| {
                reduce(&mut caller, how, ptr, len, element, op)
            },
        )?;
    }
    Ok(())
}
