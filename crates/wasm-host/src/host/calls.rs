//! The worker's side of the pack: hello and assignment (the module's main),
//! the worker's place and parameters, replies, its result and its log.

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::{FAILED, Host, Role, memory};
use crate::host::memory::{read, read_str, write, write_u32s};
use crate::pack::Pack;

/// What `volley.params` hands out.
const PARAMS: i32 = 0;
const WORKER_PARAMS: i32 = 1;
const BURST_ID: i32 = 2;
const IDEMPOTENCY_KEY: i32 = 3;

/// What `volley.finish` reports.
const RESULT: i32 = 0;
const ERROR: i32 = 1;
const ECHO_ERROR: i32 = 2;

pub(super) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    // The module's main: its function names, one per line.
    linker.func_wrap("volley", "hello", |caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
        let names = read_str(&memory(&caller), ptr as u32, len as u32)?;
        if !matches!(caller.data().role, Role::Main) {
            wasmtime::bail!("volley.hello is for the module's main thread");
        }
        caller.data().pack.hello(names.lines().map(str::to_string).collect());
        Ok(0)
    })?;
    // The module's main's next thread is the starter.
    linker.func_wrap("volley", "starting", |caller: Caller<'_, Host>| -> wasmtime::Result<()> {
        if !matches!(caller.data().role, Role::Main) {
            wasmtime::bail!("volley.starting is for the module's main thread");
        }
        caller.data().pack.starting();
        Ok(())
    })?;
    // The module's main is done with its start-up (a snapshot is taken here).
    linker.func_wrap("volley", "ready", |caller: Caller<'_, Host>| -> wasmtime::Result<()> {
        if !matches!(caller.data().role, Role::Main) {
            wasmtime::bail!("volley.ready is for the module's main thread");
        }
        caller.data().pack.ready();
        Ok(())
    })?;
    // The starter learns how many worker threads to start.
    linker.func_wrap("volley", "wait_pack", |caller: Caller<'_, Host>| -> wasmtime::Result<i32> {
        if !matches!(caller.data().role, Role::Starter) {
            wasmtime::bail!("volley.wait_pack is for the thread that starts the workers");
        }
        Ok(Pack::wait_assignment(&caller.data().pack).workers as i32)
    })?;
    // The module's main could not start its workers: they fail with this.
    linker.func_wrap("volley", "fail", |caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let message = read_str(&memory(&caller), ptr as u32, len as u32)?;
        caller.data().pack.main_failed(message);
        Ok(())
    })?;
    // rank, size, pack, first rank of the pack, workers in the pack, function index, attempt.
    linker.func_wrap("volley", "info", |mut caller: Caller<'_, Host>, out: i32| -> wasmtime::Result<i32> {
        let mem = memory(&caller);
        let function = caller.data().pack.function();
        let values = match caller.data().worker() {
            Ok(w) => {
                let ranks = w.comm().pack_ranks();
                [w.rank(), w.size(), w.pack(), ranks.start, ranks.len(), function, w.attempt() as usize]
            }
            Err(e) => return Ok(caller.data_mut().refuse(FAILED, e)),
        };
        let values: Vec<u32> = values.iter().map(|v| *v as u32).collect();
        write_u32s(&mem, out as u32, &values)?;
        Ok(0)
    })?;
    linker.func_wrap("volley", "params", |mut caller: Caller<'_, Host>, which: i32| -> i32 {
        let text = match caller.data().worker() {
            Ok(w) => match which {
                PARAMS => w.params().to_string(),
                WORKER_PARAMS => w.worker_params().to_string(),
                BURST_ID => w.burst_id().to_string(),
                IDEMPOTENCY_KEY => w.idempotency_key().unwrap_or_default().to_string(),
                other => return caller.data_mut().refuse(FAILED, format!("no parameters of kind {other}")),
            },
            Err(e) => return caller.data_mut().refuse(FAILED, e),
        };
        caller.data_mut().reply(vec![Bytes::from(text)])
    })?;
    linker.func_wrap("volley", "pending_len", |caller: Caller<'_, Host>, index: i32| -> i32 {
        caller.data().pending.get(index as usize).map_or(-1, |b| b.len() as i32)
    })?;
    linker.func_wrap(
        "volley",
        "pending_take",
        |caller: Caller<'_, Host>, index: i32, out: i32| -> wasmtime::Result<i32> {
            let Some(reply) = caller.data().pending.get(index as usize) else {
                wasmtime::bail!("the module asked for reply {index}, which does not exist");
            };
            write(&memory(&caller), out as u32, reply)?;
            Ok(reply.len() as i32)
        },
    )?;
    linker.func_wrap("volley", "log", |caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let line = String::from_utf8_lossy(&read(&memory(&caller), ptr as u32, len as u32)?).into_owned();
        match caller.data().worker() {
            Ok(w) => w.log(line),
            Err(_) => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
        Ok(())
    })?;
    linker.func_wrap(
        "volley",
        "finish",
        |mut caller: Caller<'_, Host>, kind: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let text = read_str(&memory(&caller), ptr as u32, len as u32)?;
            let host = caller.data_mut();
            host.finished = Some(match kind {
                RESULT => {
                    serde_json::from_str(&text).map_err(|e| format!("the function's result is not JSON: {e}").into())
                }
                ECHO_ERROR => Err(match host.last_comm_error.take() {
                    Some(e) => Box::new(e),
                    None => text.into(),
                }),
                ERROR => Err(text.into()),
                other => wasmtime::bail!("volley.finish of unknown kind {other}"),
            });
            Ok(())
        },
    )?;
    // A panic's message, said before the guest aborts (a trap tells nothing of it).
    linker.func_wrap(
        "volley",
        "panicked",
        |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let message = String::from_utf8_lossy(&read(&memory(&caller), ptr as u32, len as u32)?).into_owned();
            caller.data_mut().panicked = Some(message);
            Ok(())
        },
    )?;
    Ok(())
}
