/* test_nbd_tls.c: the PSK file and the NBD TLS context (src/net/nbd_tls.c).
 * The handshakes themselves (TLS 1.3 and 1.2 PSK, wrong and unknown keys,
 * through the agent's NBD server) are test_agent_nbd.c's; qemu, nbdinfo
 * and nbdcopy against a real agent are tests/func/test-nbd-tls.sh's. */
#include "base/bd.h"
#include "net/nbd_tls.h"
#include "net/tls.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse(const char *text, struct nbd_tls_psk **v, unsigned *n, char *err)
{
    return nbd_tls_psk_parse(text, strlen(text), v, n, err, 200);
}

#define K32 "00112233445566778899aabbccddeeff"

/* The file qemu and nbdkit read: identity:hexkey lines, comments and
 * blank lines skipped, sorted for lookup; CRLF tolerated. */
TEST(psk_file_parses)
{
    struct nbd_tls_psk *v;
    unsigned n;
    char err[200];
    CHECK_EQ(parse("# keys\n\nvm2:" K32 K32 "\r\nvm1:" K32 "\n", &v, &n, err), 0);
    CHECK_EQ(n, 2);
    CHECK(!strcmp(v[0].identity, "vm1") && v[0].key_len == 16 && v[0].key[1] == 0x11);
    CHECK(!strcmp(v[1].identity, "vm2") && v[1].key_len == 32 && v[1].key[31] == 0xff);
    free(v);
    CHECK_EQ(parse("", &v, &n, err), 0);
    CHECK_EQ(n, 0);
    free(v);
}

/* Every malformed line is refused with its number and no key material. */
TEST(psk_file_refuses)
{
    struct nbd_tls_psk *v;
    unsigned n;
    char err[200];
    const char *bad[] = {
        "vm1\n",                               /* no colon */
        ":" K32 "\n",                          /* no identity */
        "vm1:0011\n",                          /* key too short */
        "vm1:" K32 K32 K32 K32 "00\n",         /* key too long */
        "vm1:" K32 "0\n",                      /* odd hex */
        "vm1:00112233445566778899aabbccddeefg\n", /* not hex */
        "v m:" K32 "\n",                       /* identity not printable */
    };
    for (unsigned i = 0; i < BD_ARRAY_SIZE(bad); i++) {
        char text[400];
        snprintf(text, sizeof(text), "ok:%s\n%s", K32, bad[i]);
        CHECK_EQ(parse(text, &v, &n, err), -EINVAL);
        CHECK(strncmp(err, "line 2:", 7) == 0);
        CHECK(!strstr(err, "0011"));
    }
    CHECK_EQ(parse("a:" K32 "\nb:" K32 "\na:" K32 "\n", &v, &n, err), -EINVAL);
    CHECK(strstr(err, "twice") != NULL);
    char longid[200];
    memset(longid, 'x', NBD_TLS_PSK_ID_MAX + 1);
    longid[NBD_TLS_PSK_ID_MAX + 1] = 0;
    char text[400];
    snprintf(text, sizeof(text), "%s:" K32 "\n", longid);
    CHECK_EQ(parse(text, &v, &n, err), -EINVAL);
}

/* A PSK file must be private (as every key file) and hold a key; a
 * context needs a certificate or a PSK file. */
TEST(context_checks_files)
{
    char path[400], err[300];
    snprintf(path, sizeof(path), "%s/keys.psk", tap_tmpdir());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && dprintf(fd, "vm1:%s\n", K32) > 0);
    close(fd);
    chmod(path, 0644);
    struct nbd_tls *t = NULL;
    struct nbd_tls_opts o = {.cluster = "c", .psk_file = path};
    CHECK(nbd_tls_new(&o, &t, err, sizeof(err)) < 0 && !t);
    chmod(path, 0600);
    CHECK_EQ(nbd_tls_new(&o, &t, err, sizeof(err)), 0);
    CHECK(t && nbd_tls_psk_count(t) == 1);
    nbd_tls_free(t);
    t = NULL;
    fd = open(path, O_WRONLY | O_TRUNC);
    dprintf(fd, "# nothing\n");
    close(fd);
    CHECK(nbd_tls_new(&o, &t, err, sizeof(err)) == -EINVAL && strstr(err, "no key"));
    fd = open(path, O_WRONLY | O_TRUNC);
    dprintf(fd, "vm1:%s\nbroken\n", K32);
    close(fd);
    CHECK(nbd_tls_new(&o, &t, err, sizeof(err)) == -EINVAL && strstr(err, "line 2"));
    struct nbd_tls_opts none = {.cluster = "c"};
    CHECK_EQ(nbd_tls_new(&none, &t, err, sizeof(err)), -EINVAL);
    CHECK(!t);
}
