/* OpenMPI's side of `volley bench comm`'s comparisons (issue 17): the same
 * collectives, sizes and checks, so that a figure reads as a ratio to MPI
 * measured in the same run. Every rank fills its parts with a pattern of
 * (sender, receiver, iteration) and checks what it received in the first and
 * last measured iterations, outside the timing; a mismatch fails the run.
 *
 * usage: collectives OP SIZE ITERS WARMUP   (OP: all-reduce | all-to-all | broadcast)
 * prints one line: op ranks size p50_us p99_us max_us (the slowest rank per iteration) */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The same pattern as crates/bench/src/verify.rs. */
static void part(uint64_t sender, uint64_t receiver, uint64_t iteration, unsigned char *out, size_t size) {
    uint64_t seed = mix(mix(mix(sender) ^ receiver) ^ iteration);
    uint64_t word = 0;
    for (size_t at = 0; at < size; at += 8) {
        word++;
        uint64_t v = mix(seed ^ word);
        size_t n = size - at < 8 ? size - at : 8;
        memcpy(out + at, &v, n);
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fail(const char *what, int rank) {
    fprintf(stderr, "mpi collectives: %s (rank %d)\n", what, rank);
    MPI_Abort(MPI_COMM_WORLD, 2);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    if (argc != 5) fail("usage: collectives OP SIZE ITERS WARMUP", rank);
    const char *op = argv[1];
    size_t size = strtoull(argv[2], NULL, 10);
    int iters = atoi(argv[3]), warmup = atoi(argv[4]);
    if (iters < 1 || size == 0) fail("ITERS and SIZE must be positive", rank);
    const uint64_t every = UINT64_MAX;
    size_t count = size / 8; /* all-reduce: f64 elements */
    size_t total = strcmp(op, "all-to-all") == 0 ? size * (size_t)n : size;
    unsigned char *send = malloc(total), *recv = malloc(total), *want = malloc(size);
    double *samples = malloc(sizeof(double) * iters);
    if (!send || !recv || !want || !samples) fail("out of memory", rank);
    memset(send, 0x5a, total);
    for (int i = 0; i < warmup + iters; i++) {
        int verified = i == warmup || i == warmup + iters - 1;
        /* Inputs made before the timer. */
        if (strcmp(op, "all-reduce") == 0) {
            double *e = (double *)send;
            for (size_t k = 0; k < count; k++)
                e[k] = verified ? (double)((rank + 1) * (k % 1024 + 1) + i % 7) : 1.0;
        } else if (verified && strcmp(op, "all-to-all") == 0) {
            for (int r = 0; r < n; r++) part(rank, r, i, send + (size_t)r * size, size);
        } else if (verified && strcmp(op, "broadcast") == 0 && rank == 0) {
            part(0, every, i, send, size);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        if (strcmp(op, "all-reduce") == 0) {
            MPI_Allreduce(send, recv, (int)count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        } else if (strcmp(op, "all-to-all") == 0) {
            MPI_Alltoall(send, (int)size, MPI_BYTE, recv, (int)size, MPI_BYTE, MPI_COMM_WORLD);
        } else if (strcmp(op, "broadcast") == 0) {
            unsigned char *buf = rank == 0 ? send : recv;
            MPI_Bcast(buf, (int)size, MPI_BYTE, 0, MPI_COMM_WORLD);
            if (rank == 0) memcpy(recv, send, size);
        } else {
            fail("OP is all-reduce, all-to-all or broadcast", rank);
        }
        double elapsed = MPI_Wtime() - start, slowest;
        MPI_Allreduce(&elapsed, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (i >= warmup) samples[i - warmup] = slowest * 1e6;
        if (!verified) continue;
        if (strcmp(op, "all-reduce") == 0) {
            const double *got = (const double *)recv;
            double weights = (double)n * (n + 1) / 2, offset = (double)n * (i % 7);
            for (size_t k = 0; k < count; k++)
                if (got[k] != (double)(k % 1024 + 1) * weights + offset) fail("all-reduce: a wrong sum", rank);
        } else if (strcmp(op, "all-to-all") == 0) {
            for (int s = 0; s < n; s++) {
                part(s, rank, i, want, size);
                if (memcmp(recv + (size_t)s * size, want, size) != 0) fail("all-to-all: a part differs", rank);
            }
        } else {
            part(0, every, i, want, size);
            if (memcmp(recv, want, size) != 0) fail("broadcast: the data differs", rank);
        }
    }
    if (rank == 0) {
        qsort(samples, iters, sizeof(double), cmp);
        printf("%s %d %zu %.1f %.1f %.1f\n", op, n, size, samples[iters / 2], samples[(iters * 99) / 100],
               samples[iters - 1]);
    }
    MPI_Finalize();
    return 0;
}
