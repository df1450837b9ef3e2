/* errors-pipeline-no-read.c: CONTRACT.md §3 4.2 "a client that never
 * reads replies while pipelining thousands of requests": a bounded queue
 * per connection; the server stops reading (back-pressure) instead of
 * growing; other clients are served meanwhile; every request is answered
 * once the client reads (Crucible #788). */
#include "nbdtest.h"

#include <fcntl.h>

int main(void)
{
    t_init();
    int fd = t_connect();
    int sndbuf = 64 << 10; /* keep what waits in our own socket small */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    t_raw_go(fd, t_export, false, false, NULL);
    long rss0 = t_server_rss_kb();
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uint8_t h[28];
    uint64_t sent = 0, stalled_since = 0;
    size_t part = 0; /* bytes of the current header already sent */
    while (sent < 1000000) {
        t_put_be32(h, T_REQ_MAGIC);
        t_put_be16(h + 4, 0);
        t_put_be16(h + 6, T_CMD_READ);
        t_put_be64(h + 8, sent);
        t_put_be64(h + 16, (sent % 64) * 65536);
        t_put_be32(h + 24, 4096);
        ssize_t n = send(fd, h + part, 28 - part, MSG_NOSIGNAL);
        if (n > 0) {
            part += (size_t)n;
            if (part == 28) {
                part = 0;
                sent++;
            }
            stalled_since = 0;
            continue;
        }
        T_CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        if (!stalled_since) stalled_since = t_now_ms();
        if (t_now_ms() - stalled_since > 1000) break; /* the server stopped reading */
        usleep(1000);
    }
    if (sent >= 1000000) T_FAIL("the server read a million pipelined requests unanswered");
    long rss1 = t_server_rss_kb();
    fprintf(stderr, "%llu requests accepted before back-pressure; server RSS %ld -> %ld KiB\n",
            (unsigned long long)sent, rss0, rss1);
    if (rss0 > 0 && rss1 - rss0 > 128 * 1024) T_FAIL("server RSS grew by %ld KiB", rss1 - rss0);
    /* another client is served meanwhile */
    struct nbd_handle *o = t_open(t_export, true, false);
    char buf[4096];
    T_NBD(nbd_pread(o, buf, sizeof(buf), 0, 0));
    nbd_close(o);
    /* now read everything: every request gets its reply (the socket stays
     * non-blocking: a torn last header is finished as the server drains) */
    static uint8_t data[4096];
    for (uint64_t i = 0; i < sent; i++) {
        uint64_t ck;
        T_CHECK(t_simple(fd, &ck) == 0);
        t_recv(fd, data, sizeof(data));
        if (part) {
            ssize_t n = send(fd, h + part, 28 - part, MSG_NOSIGNAL);
            if (n > 0) part += (size_t)n;
            if (part == 28) {
                part = 0;
                sent++;
            }
        }
    }
    T_CHECK(part == 0);
    close(fd);
    return 0;
}
