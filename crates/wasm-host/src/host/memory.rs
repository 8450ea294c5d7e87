//! Copies between the pack's shared memory and the host. The memory is
//! shared with running guest threads, so it is only ever copied with raw
//! copies, never seen as a Rust slice (as wasmtime's own WASI layer does).

use wasmtime::SharedMemory;

/// The bytes `[ptr, ptr + len)` of the memory, or a trap if the guest named
/// bytes outside it.
fn range(memory: &SharedMemory, ptr: u32, len: usize) -> wasmtime::Result<*mut u8> {
    let data = memory.data();
    let start = ptr as usize;
    match start.checked_add(len) {
        Some(end) if end <= data.len() => Ok(data[start..end].as_ptr().cast::<u8>().cast_mut()),
        _ => wasmtime::bail!("the module passed {len} bytes at {ptr:#x}, outside its memory of {} bytes", data.len()),
    }
}

/// Appends the guest's `len` bytes at `ptr` to `out`.
pub(crate) fn read_into(memory: &SharedMemory, ptr: u32, len: u32, out: &mut Vec<u8>) -> wasmtime::Result<()> {
    let len = len as usize;
    let from = range(memory, ptr, len)?;
    out.reserve(len);
    // SAFETY: `from` covers `len` bytes inside the memory (checked above);
    // `out` has room for them; a guest writing meanwhile changes bytes, not
    // their places.
    unsafe {
        std::ptr::copy_nonoverlapping(from, out.as_mut_ptr().add(out.len()), len);
        out.set_len(out.len() + len);
    }
    Ok(())
}

/// The guest's `len` bytes at `ptr`.
pub(crate) fn read(memory: &SharedMemory, ptr: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
    let mut out = Vec::new();
    read_into(memory, ptr, len, &mut out)?;
    Ok(out)
}

/// The guest's text at `ptr`.
pub(crate) fn read_str(memory: &SharedMemory, ptr: u32, len: u32) -> wasmtime::Result<String> {
    String::from_utf8(read(memory, ptr, len)?)
        .map_err(|_| wasmtime::format_err!("the module passed text that is not UTF-8"))
}

/// `n` little-endian u32 values at `ptr` (a guest's array of pointers and lengths).
pub(crate) fn read_u32s(memory: &SharedMemory, ptr: u32, n: u32) -> wasmtime::Result<Vec<u32>> {
    let bytes = read(memory, ptr, n.checked_mul(4).ok_or_else(|| wasmtime::format_err!("too many values"))?)?;
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Writes `src` to the guest's memory at `ptr`.
pub(crate) fn write(memory: &SharedMemory, ptr: u32, src: &[u8]) -> wasmtime::Result<()> {
    let to = range(memory, ptr, src.len())?;
    // SAFETY: `to` covers `src.len()` bytes inside the memory (checked above).
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), to, src.len()) };
    Ok(())
}

/// Writes little-endian u32 values to the guest's memory at `ptr`.
pub(crate) fn write_u32s(memory: &SharedMemory, ptr: u32, values: &[u32]) -> wasmtime::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write(memory, ptr, &bytes)
}
