//! Non-blocking sends and receives (`isend`, `irecv`): each posted request
//! is kept in the worker's store under a number the guest holds, tested
//! without blocking and waited for once.

use bytes::Bytes;
use volley_comm::{RecvRequest, SendRequest};
use wasmtime::{Caller, Linker};

use super::comm::{ANY, deliver, inline};
use super::{FAILED, Host};

/// A request the guest posted.
pub(crate) enum Request {
    Send(SendRequest),
    Recv(RecvRequest),
    /// A receive whose message `test` already took.
    Received(Result<(usize, Bytes), volley_comm::Error>),
}

/// Keeps `request`; returns its number.
fn keep(host: &mut Host, request: Request) -> i32 {
    match host.requests.iter().position(Option::is_none) {
        Some(free) => {
            host.requests[free] = Some(request);
            free as i32
        }
        None => {
            host.requests.push(Some(request));
            host.requests.len() as i32 - 1
        }
    }
}

fn slot(host: &mut Host, id: i32) -> Option<&mut Option<Request>> {
    usize::try_from(id).ok().and_then(|i| host.requests.get_mut(i))
}

pub(super) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap("volley", "isend", |mut caller: Caller<'_, Host>, dst: i32, tag: i64, ptr: i32, len: i32| {
        let message = inline(&caller, ptr, len)?;
        let request = match caller.data().worker() {
            Ok(w) => w.comm().isend(dst as u32 as usize, tag as u64, message),
            Err(e) => return wasmtime::Result::Ok(caller.data_mut().refuse(FAILED, e)),
        };
        Ok(keep(caller.data_mut(), Request::Send(request)))
    })?;
    linker.func_wrap("volley", "irecv", |mut caller: Caller<'_, Host>, src: i32, tag: i64| -> i32 {
        if src < ANY {
            return caller.data_mut().refuse(FAILED, format!("no rank {src}"));
        }
        let request = match caller.data().worker() {
            Ok(w) if src == ANY => w.comm().irecv_any(tag as u64),
            Ok(w) => w.comm().irecv(src as usize, tag as u64),
            Err(e) => return caller.data_mut().refuse(FAILED, e),
        };
        keep(caller.data_mut(), Request::Recv(request))
    })?;
    // 1: done (wait returns at once); 0: not yet; never blocks.
    linker.func_wrap("volley", "request_test", |mut caller: Caller<'_, Host>, id: i32| -> wasmtime::Result<i32> {
        let Some(slot) = slot(caller.data_mut(), id) else { wasmtime::bail!("no request {id}") };
        let done = match slot {
            Some(Request::Send(r)) => r.test(),
            Some(Request::Recv(r)) => match r.test() {
                Some(received) => {
                    *slot = Some(Request::Received(received));
                    true
                }
                None => false,
            },
            Some(Request::Received(_)) => true,
            None => wasmtime::bail!("request {id} was already waited for"),
        };
        Ok(done as i32)
    })?;
    // Waits for the request and forgets it; a receive writes its header at `out` as `recv` does.
    linker.func_wrap(
        "volley",
        "request_wait",
        |mut caller: Caller<'_, Host>, id: i32, out: i32| -> wasmtime::Result<i32> {
            let Some(request) = slot(caller.data_mut(), id).and_then(Option::take) else {
                wasmtime::bail!("no request {id} to wait for")
            };
            let received = match request {
                Request::Send(r) => {
                    return Ok(match r.wait() {
                        Ok(()) => 0,
                        Err(e) => caller.data_mut().comm_failed(e),
                    });
                }
                Request::Recv(r) => r.wait(),
                Request::Received(r) => r,
            };
            match received {
                Ok((from, message)) => {
                    caller.data_mut().pending = vec![message];
                    deliver(&mut caller, from, out)
                }
                Err(e) => Ok(caller.data_mut().comm_failed(e)),
            }
        },
    )?;
    // A request the guest dropped without waiting.
    linker.func_wrap("volley", "request_forget", |mut caller: Caller<'_, Host>, id: i32| {
        if let Some(slot) = slot(caller.data_mut(), id) {
            *slot = None;
        }
    })?;
    Ok(())
}
