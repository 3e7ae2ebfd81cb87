/* The float32 multiply-add peak of this machine's cores, for judging how near
 * a matrix product runs to what the hardware can do (docs/performance.md,
 * FNetBlock).
 *
 *     gcc -O2 -march=native -o /tmp/peak_flops bench/peak_flops.c -lpthread
 *     /tmp/peak_flops 1 && /tmp/peak_flops 2      # threads
 *
 * Each thread runs 12 independent chains of fused multiply-adds on the widest
 * vectors the compiler was allowed (AVX-512, else AVX2 with FMA), enough to
 * hide the instruction's latency, with nothing else in the loop. A FLOP is a
 * multiply or an add: one fused multiply-add on 16 floats is 32. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERATIONS 200000000L

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ISA "AVX-512"
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ISA "AVX2+FMA"
#else
#error "needs AVX-512 or AVX2 with FMA: compile with -march=native on such a CPU"
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAIN(i) vec a##i = SET1(1.0f + i * 1e-3f);
#define STEP(i) a##i = FMA(a##i, b, c);
#define SUM(i) *(vec *)lanes = a##i; for (int l = 0; l < LANES; l++) sum += lanes[l];
#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static void *run(void *out) {
    /* Twelve named chains, not an array, so that they live in registers. */
    EACH(CHAIN)
    vec b = SET1(0.9999999f), c = SET1(1e-9f);
    for (long n = 0; n < ITERATIONS; n++) {
        EACH(STEP)
        /* Keeps the loop from being folded into fewer operations. */
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5),
                         "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    float lanes[LANES] __attribute__((aligned(64))), sum = 0;
    EACH(SUM)
    *(float *)out = sum;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "threads is %s, expected a number from 1 to 256\n", argv[1]);
        return 2;
    }
    pthread_t *ids = malloc(sizeof *ids * threads);
    float *sums = malloc(sizeof *sums * threads);
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, run, &sums[i]);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    double seconds = now() - t0;
    double flops = (double)threads * ITERATIONS * 12 * LANES * 2;
    printf("%s, %d thread(s): %.3f s, %.1f GFLOP/s float32 (checksum %g)\n", ISA, threads,
           seconds, flops / seconds / 1e9, sums[0]);
    free(ids);
    free(sums);
    return 0;
}
