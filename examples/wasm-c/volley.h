/* The host functions of a Volley WebAssembly pack (crates/wasm-host/src/host/),
 * for guests written in C without a libc: the Rust guest SDK (crates/wasm)
 * is the other user of this interface. Pointers are addresses in the pack's
 * shared memory; a call that fails returns a negative status. */
#ifndef VOLLEY_H
#define VOLLEY_H

#include <stdint.h>

#define VOLLEY_IMPORT(name) __attribute__((import_module("volley"), import_name(#name)))

VOLLEY_IMPORT(hello) int32_t volley_hello(const char *names, uint32_t len);
VOLLEY_IMPORT(starting) void volley_starting(void);
VOLLEY_IMPORT(ready) void volley_ready(void);
VOLLEY_IMPORT(wait_pack) int32_t volley_wait_pack(void);
VOLLEY_IMPORT(info) int32_t volley_info(uint32_t out[7]);
VOLLEY_IMPORT(params) int32_t volley_params(int32_t which);
VOLLEY_IMPORT(pending_len) int32_t volley_pending_len(int32_t index);
VOLLEY_IMPORT(pending_take) int32_t volley_pending_take(int32_t index, void *out);
VOLLEY_IMPORT(finish) void volley_finish(int32_t kind, const char *text, uint32_t len);
VOLLEY_IMPORT(all_reduce) int32_t volley_all_reduce(const void *data, uint32_t len, int32_t element, int32_t op);

/* wasi-threads: start a thread that enters wasi_thread_start(tid, start_arg). */
__attribute__((import_module("wasi"), import_name("thread-spawn"))) int32_t wasi_thread_spawn(int32_t start_arg);

enum { VOLLEY_U64 = 3, VOLLEY_SUM = 0, VOLLEY_RESULT = 0, VOLLEY_ERROR = 1 };

#endif
