//! Object storage for a worker, over the storage crate (the pack's own
//! credentials and local-storage grants; WASI offers the guest no network).

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::{FAILED, Host, memory};
use crate::host::memory::{read, read_str};

fn object(caller: &mut Caller<'_, Host>, url: &str, key: &str, data: Option<Bytes>) -> i32 {
    let outcome = match caller.data().worker() {
        Ok(w) => w.storage(url).map_err(|e| e.to_string()).and_then(|storage| match data {
            Some(data) => w.block_on(storage.put(key, data)).map(|()| Vec::new()).map_err(|e| e.to_string()),
            None => w.block_on(storage.get(key)).map(|b| vec![b]).map_err(|e| e.to_string()),
        }),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(replies) => caller.data_mut().reply(replies),
        Err(e) => caller.data_mut().refuse(FAILED, e),
    }
}

pub(super) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "volley",
        "storage_get",
        |mut caller: Caller<'_, Host>, url: i32, url_len: i32, key: i32, key_len: i32| -> wasmtime::Result<i32> {
            let mem = memory(&caller);
            let (url, key) = (read_str(&mem, url as u32, url_len as u32)?, read_str(&mem, key as u32, key_len as u32)?);
            Ok(object(&mut caller, &url, &key, None))
        },
    )?;
    linker.func_wrap(
        "volley",
        "storage_put",
        |mut caller: Caller<'_, Host>,
         url: i32,
         url_len: i32,
         key: i32,
         key_len: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<i32> {
            let mem = memory(&caller);
            let (url, key) = (read_str(&mem, url as u32, url_len as u32)?, read_str(&mem, key as u32, key_len as u32)?);
            let data = Bytes::from(read(&mem, ptr as u32, len as u32)?);
            Ok(object(&mut caller, &url, &key, Some(data)))
        },
    )?;
    Ok(())
}
