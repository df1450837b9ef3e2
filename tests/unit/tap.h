/* tap.h: a tiny unit-test runner that speaks TAP (meson's protocol: 'tap').
 *
 *   TEST(round_trip_put) {
 *       CHECK(wire_decode_blob_put_req(...) == 0);
 *       CHECK_EQ(m.blob_id, 7);
 *   }
 *
 * Each TEST registers itself; main (tap.c) runs them in file order, or only
 * those named on the command line, and prints "ok N - name" or "not ok".
 * A failed CHECK prints the file, line, expression (and values for
 * CHECK_EQ) and returns from the test.  tap_seed() gives a seed from
 * $TEST_SEED or the clock, printed so a failure can be replayed.
 *
 * A test program may also write fuzz seeds from its vectors.  That is a
 * tool, not a test: a TAP_CORPUS function runs only as
 * `test_NAME --write-corpus DIR` (tests/fuzz/gen-corpus), never in a test
 * run, and a failed CHECK in it makes that command exit 1. */
#ifndef BD_TAP_H
#define BD_TAP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

void tap_register(const char *name, void (*fn)(void));
void tap_register_corpus(void (*fn)(const char *dir));
void tap_fail(const char *file, int line, const char *expr);
void tap_fail_eq(const char *file, int line, const char *expr, unsigned long long a,
                 unsigned long long b);
uint64_t tap_seed(void);
/* A fresh empty directory under $TMPDIR for this test; removed at exit. */
const char *tap_tmpdir(void);

#define TEST(name)                                                                         \
    static void test_##name(void);                                                         \
    __attribute__((constructor)) static void register_##name(void)                         \
    {                                                                                      \
        tap_register(#name, test_##name);                                                  \
    }                                                                                      \
    static void test_##name(void)

#define TAP_CORPUS(name)                                                                   \
    static void corpus_##name(const char *dir);                                            \
    __attribute__((constructor)) static void register_corpus_##name(void)                  \
    {                                                                                      \
        tap_register_corpus(corpus_##name);                                                \
    }                                                                                      \
    static void corpus_##name(const char *dir)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            tap_fail(__FILE__, __LINE__, #cond);                                           \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);     \
        if (a_ != b_) {                                                                    \
            tap_fail_eq(__FILE__, __LINE__, #a " == " #b, a_, b_);                         \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#endif
