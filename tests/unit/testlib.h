/* testlib.h: helpers the unit tests share (linked into every unit test).
 *
 * Waiting.  A unit test drives its reactor itself; every wait here is
 * bounded by a deadline in milliseconds and says whether it got there, so
 * a test CHECKs the result instead of hanging:
 *
 *   int done = 0;
 *   blobstore_close(bs, testlib_set_flag, &done);
 *   CHECK(testlib_run_until_flag(rx, &done, 10000));
 *
 * The reactor runs one event-loop pass at a time (blocking until an event,
 * a 5 ms tick or the deadline), and the condition is checked before the
 * first pass and after each.  Conditions may depend on anything the
 * reactor's callbacks change, or on time.
 *
 * HTTP.  testlib_http sends one raw request to a loopback port served by
 * the same reactor (the admin endpoint of a role under test) and pumps the
 * reactor until the server closes the connection (Connection: close) or 3 s
 * pass.
 *
 * Files.  Small helpers for tests that damage or measure files on disk.
 *
 * Nothing here fails the test itself: results are returned for CHECK. */
#ifndef BD_TESTLIB_H
#define BD_TESTLIB_H

#include "runtime/reactor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Run RX until COND() holds or MS milliseconds pass; true if it holds.
 * (A test's state is file-static, so conditions take no argument.) */
bool testlib_run_until(struct reactor *rx, bool (*cond)(void), int ms);

/* Run RX until *FLAG is non-zero or MS pass; true if it is. */
bool testlib_run_until_flag(struct reactor *rx, const int *flag, int ms);

/* Run RX until *COUNT >= WANT or MS pass; true if it got there. */
bool testlib_run_until_count(struct reactor *rx, const int *count, int want, int ms);

/* Run RX for MS milliseconds, whatever happens (let I/O and timers settle). */
void testlib_pump(struct reactor *rx, int ms);

/* A completion callback for calls that take (void (*)(void *), void *):
 * sets *(int *)ARG to 1. */
void testlib_set_flag(void *arg);

/* Send the raw HTTP request REQ to 127.0.0.1:PORT while running RX; the
 * response's status code, or -1 (no connection, no answer, not HTTP/1.1).
 * The body (after the blank line), NUL-terminated, goes to BODY (CAP
 * bytes, truncated) unless BODY is NULL.  Responses up to 128 KiB. */
int testlib_http(struct reactor *rx, int port, const char *req, char *body, size_t cap);

/* GET PATH with Connection: close; as testlib_http. */
int testlib_http_get(struct reactor *rx, int port, const char *path, char *body, size_t cap);

/* The size of the file at PATH, or -1 if it cannot be stat'ed. */
int64_t testlib_file_size(const char *path);

/* XOR the byte at OFF of the file at PATH with MASK, in place (a bit flip
 * for corruption tests).  0, or -errno; -ERANGE if OFF is past the end. */
int testlib_flip_byte(const char *path, uint64_t off, uint8_t mask);

#endif
