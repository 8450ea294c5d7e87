/* The pi example as a WebAssembly module written in C, with no libc: the
 * same darts as examples/pi and examples/wasm-pi (a rank hits exactly as
 * often), one all_reduce of the hits and samples. The module's main says
 * hello and makes the thread that starts the workers (thread 0), which the
 * host runs when the pack comes; worker threads are 1..=n.
 *
 *   examples/wasm-c/build pi.wasm
 *   volley deploy pi pi.wasm && volley run pi -n 8 -g 4 --params '{"samples": 100000}'
 */
#include <stdint.h>

#include "volley.h"

/* Most workers in one pack, and each thread's stack. */
#define MAX_WORKERS 64
#define STACK 65536

/* One stack per thread: the starter (0) and the workers (1..=MAX_WORKERS);
 * start.s points thread `arg` at the top of slot `arg`. */
_Alignas(16) char stacks[(MAX_WORKERS + 1) * STACK];

static const char NAMES[] = "pi";

/* xorshift64*, seeded by rank, as examples/pi. */
static double next(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double)((*state * 0x2545F4914F6CDD1DULL) >> 11) / (double)(1ULL << 53);
}

/* The number after "samples": in the JSON parameters, or 100000. */
static uint64_t samples_of(const char *json, int32_t len) {
    static const char key[] = "\"samples\"";
    for (int32_t i = 0; i + 9 <= len; i++) {
        int32_t k = 0;
        while (k < 9 && json[i + k] == key[k]) k++;
        if (k < 9) continue;
        int32_t j = i + 9;
        while (j < len && (json[j] == ' ' || json[j] == ':')) j++;
        uint64_t n = 0;
        while (j < len && json[j] >= '0' && json[j] <= '9') n = n * 10 + (uint64_t)(json[j++] - '0');
        return n;
    }
    return 100000;
}

/* Appends the decimal digits of n. */
static char *put_u64(char *out, uint64_t n) {
    char digits[20];
    int32_t k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (k) *out++ = digits[--k];
    return out;
}

static char *put(char *out, const char *s) {
    while (*s) *out++ = *s++;
    return out;
}

static void fail(const char *why) {
    int32_t len = 0;
    while (why[len]) len++;
    volley_finish(VOLLEY_ERROR, why, (uint32_t)len);
}

static void worker(void) {
    uint32_t info[7];
    if (volley_info(info) < 0) return fail("no worker information");
    uint64_t rank = info[0];
    static char params[MAX_WORKERS + 1][256];
    char *mine = params[rank % (MAX_WORKERS + 1)];
    int32_t len = volley_params(0) < 0 ? 0 : volley_pending_len(0);
    if (len > 255) len = 0;
    if (len > 0) volley_pending_take(0, mine);
    uint64_t samples = samples_of(mine, len);
    uint64_t state = 0x9E3779B97F4A7C15ULL ^ ((rank + 1) * 0xBF58476D1CE4E5B9ULL);
    uint64_t hits = 0;
    for (uint64_t i = 0; i < samples; i++) {
        double x = next(&state), y = next(&state);
        if (x * x + y * y <= 1.0) hits++;
    }
    uint64_t counts[2] = {hits, samples};
    if (volley_all_reduce(counts, sizeof counts, VOLLEY_U64, VOLLEY_SUM) < 0) return fail("all_reduce failed");
    volley_pending_take(0, counts);
    char result[160], *out = result;
    out = put(out, "{\"rank\":");
    out = put_u64(out, rank);
    out = put(out, ",\"hits\":");
    out = put_u64(out, hits);
    out = put(out, ",\"total_hits\":");
    out = put_u64(out, counts[0]);
    out = put(out, ",\"total_samples\":");
    out = put_u64(out, counts[1]);
    out = put(out, ",\"language\":\"C\"}");
    volley_finish(VOLLEY_RESULT, result, (uint32_t)(out - result));
}

/* Every thread but the main: the starter (0) starts the pack's workers (1..=n). */
void thread_main(int32_t tid, int32_t arg) {
    (void)tid;
    if (arg != 0) return worker();
    int32_t workers = volley_wait_pack();
    for (int32_t i = 1; i <= workers && i <= MAX_WORKERS; i++) wasi_thread_spawn(i);
}

void _start(void) {
    volley_hello(NAMES, sizeof NAMES - 1);
    volley_starting(); /* the next thread is the one that starts the workers */
    wasi_thread_spawn(0);
    volley_ready();
}
