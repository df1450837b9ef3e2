/* errors-half-open-connections.c: CONTRACT.md §3 4.1 "connect and never
 * finish the handshake; 1000 such connections": a legitimate client still
 * gets in within a bounded time, and the server's memory stays bounded
 * (qemu CVE-2024-7409: max-connections, drop non-negotiating clients). */
#include "nbdtest.h"

#include <sys/resource.h>

#define N_STALLED 1000

int main(void)
{
    t_init();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < N_STALLED + 64) {
        rl.rlim_cur = rl.rlim_max < N_STALLED + 64 ? rl.rlim_max : N_STALLED + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < N_STALLED + 64)
        T_SKIP("RLIMIT_NOFILE %llu too low", (unsigned long long)rl.rlim_cur);
    long rss0 = t_server_rss_kb();
    static int fds[N_STALLED];
    for (int i = 0; i < N_STALLED; i++) {
        fds[i] = t_connect();
        /* a third say nothing, a third stop after the flags, a third
         * inside an option payload */
        if (i % 3 >= 1) t_send(fds[i], "\0\0\0\1", 4);
        if (i % 3 == 2) {
            uint8_t h[20];
            t_put_be64(h, T_IHAVEOPT);
            t_put_be32(h + 8, T_OPT_GO);
            t_put_be32(h + 12, 60000);
            t_send(fds[i], h, 20);
        }
    }
    uint64_t t0 = t_now_ms();
    struct nbd_handle *h = t_open(t_export, true, false);
    char buf[4096];
    T_NBD(nbd_pread(h, buf, sizeof(buf), 0, 0));
    uint64_t ms = t_now_ms() - t0;
    if (ms > 3000) T_FAIL("a legitimate client took %llu ms to get in", (unsigned long long)ms);
    long rss1 = t_server_rss_kb();
    if (rss0 > 0) {
        fprintf(stderr,
                "server RSS %ld -> %ld KiB with %d stalled connections; client in %llu ms\n", rss0,
                rss1, N_STALLED, (unsigned long long)ms);
        if (rss1 - rss0 > 64 * 1024) T_FAIL("server RSS grew by %ld KiB", rss1 - rss0);
    }
    double hs = t_status_num("handshakes");
    double maxhs = t_status_num("max_handshakes");
    if (hs >= 0 && maxhs >= 0 && hs > maxhs) T_FAIL("%g handshakes over the cap %g", hs, maxhs);
    nbd_close(h);
    for (int i = 0; i < N_STALLED; i++) close(fds[i]);
    return 0;
}
