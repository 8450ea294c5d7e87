//! The host functions a Volley pack offers (`volley.*`; the host's
//! `crates/wasm-host/src/host/` is the other side). Pointers are the guest's
//! addresses in the pack's shared memory.

#[link(wasm_import_module = "volley")]
unsafe extern "C" {
    pub(crate) fn hello(names: *const u8, len: usize) -> i32;
    pub(crate) fn starting();
    pub(crate) fn ready();
    pub(crate) fn wait_pack() -> i32;
    pub(crate) fn fail(message: *const u8, len: usize);
    pub(crate) fn info(out: *mut u32) -> i32;
    pub(crate) fn params(which: i32) -> i32;
    pub(crate) fn pending_len(index: i32) -> i32;
    pub(crate) fn pending_take(index: i32, out: *mut u8) -> i32;
    pub(crate) fn log(line: *const u8, len: usize);
    pub(crate) fn finish(kind: i32, text: *const u8, len: usize);
    pub(crate) fn panicked(message: *const u8, len: usize);
    pub(crate) fn send(dst: i32, tag: i64, data: *const u8, len: usize) -> i32;
    pub(crate) fn send_owned(dst: i32, tag: i64, data: *mut u8, len: usize, cap: usize) -> i32;
    pub(crate) fn recv(src: i32, tag: i64, out: *mut u32) -> i32;
    pub(crate) fn isend(dst: i32, tag: i64, data: *const u8, len: usize) -> i32;
    pub(crate) fn irecv(src: i32, tag: i64) -> i32;
    pub(crate) fn request_test(id: i32) -> i32;
    pub(crate) fn request_wait(id: i32, out: *mut u32) -> i32;
    pub(crate) fn request_forget(id: i32);
    pub(crate) fn barrier() -> i32;
    pub(crate) fn stats(out: *mut u64) -> i32;
    pub(crate) fn op_timeout_ms() -> i64;
    pub(crate) fn abort(reason: *const u8, len: usize);
    pub(crate) fn broadcast(root: i32, data: *const u8, len: usize) -> i32;
    pub(crate) fn scatter(root: i32, parts: *const u32, n: usize) -> i32;
    pub(crate) fn gather(root: i32, data: *const u8, len: usize) -> i32;
    pub(crate) fn all_gather(data: *const u8, len: usize) -> i32;
    pub(crate) fn all_to_all(parts: *const u32, n: usize) -> i32;
    pub(crate) fn all_to_all_vec(parts: *const u32, n: usize, out: *mut u32) -> i32;
    pub(crate) fn reduce(root: i32, data: *const u8, len: usize, element: i32, op: i32) -> i32;
    pub(crate) fn all_reduce(data: *const u8, len: usize, element: i32, op: i32) -> i32;
    pub(crate) fn reduce_scatter(data: *const u8, len: usize, element: i32, op: i32) -> i32;
    pub(crate) fn storage_get(url: *const u8, url_len: usize, key: *const u8, key_len: usize) -> i32;
    pub(crate) fn storage_put(
        url: *const u8,
        url_len: usize,
        key: *const u8,
        key_len: usize,
        data: *const u8,
        len: usize,
    ) -> i32;
}

/// The call failed because another worker did (any other negative status:
/// it failed; either way the error's text is the pending reply).
pub(crate) const ECHO: i32 = -2;

/// Copies out pending reply `index`.
pub(crate) fn take(index: i32) -> Vec<u8> {
    // SAFETY: host calls on this thread's replies; the buffer has the room the host said.
    unsafe {
        let len = pending_len(index);
        if len <= 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(len as usize);
        let written = pending_take(index, out.as_mut_ptr());
        out.set_len(written.max(0) as usize);
        out
    }
}

/// The `n` pending replies.
pub(crate) fn take_all(n: i32) -> Vec<Vec<u8>> {
    (0..n).map(take).collect()
}

/// A status as a result: `Ok(value)` or the error the host left.
pub(crate) fn status(code: i32) -> Result<i32, crate::Error> {
    match code {
        c if c >= 0 => Ok(c),
        ECHO => Err(crate::Error::echo(String::from_utf8_lossy(&take(0)).into_owned())),
        _ => Err(crate::Error::new(String::from_utf8_lossy(&take(0)).into_owned())),
    }
}

/// (address, length) pairs of `parts`, for the host to read.
pub(crate) fn pairs(parts: &[impl AsRef<[u8]>]) -> Vec<u32> {
    parts.iter().flat_map(|p| [p.as_ref().as_ptr() as u32, p.as_ref().len() as u32]).collect()
}
