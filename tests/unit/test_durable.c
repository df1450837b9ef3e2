/* test_durable.c: what src/base/util.c makes durable, observed at the
 * system call: every directory util_mkdir_p creates has its parent
 * fsynced (a directory a power cut can take back takes everything fsynced
 * inside it: a first Raft vote, a journal segment, a blob), and
 * util_write_file_atomic fsyncs the file, then its directory, with the
 * mode asked for whatever the umask.
 *
 * fsync is interposed below: this executable's definition wins over
 * libc's for every call made from it (util.c is linked in statically),
 * records which path was synced, then does the real system call. */
#include "base/bd.h"
#include "base/util.h"
#include "tap.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char synced[64][512];
static unsigned n_synced;

int fsync(int fd)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    if (n_synced < 64) {
        ssize_t n = readlink(link, synced[n_synced], sizeof(synced[0]) - 1);
        if (n >= 0) synced[n_synced++][n] = 0;
    }
    return (int)syscall(SYS_fsync, fd);
}

static bool was_synced(const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) return false;
    for (unsigned i = 0; i < n_synced; i++)
        if (strcmp(synced[i], real) == 0) return true;
    return false;
}

TEST(mkdir_p_fsyncs_every_parent)
{
    char base[512], path[600];
    snprintf(base, sizeof(base), "%s", tap_tmpdir());
    snprintf(path, sizeof(path), "%s/a/b/c", base);
    n_synced = 0;
    CHECK_EQ(util_mkdir_p(path, 0700), 0);
    char p[600];
    CHECK(was_synced(base)); /* for a */
    snprintf(p, sizeof(p), "%s/a", base);
    CHECK(was_synced(p));    /* for b */
    snprintf(p, sizeof(p), "%s/a/b", base);
    CHECK(was_synced(p));    /* for c */
    /* Nothing new to create: nothing to sync. */
    n_synced = 0;
    CHECK_EQ(util_mkdir_p(path, 0700), 0);
    CHECK_EQ(n_synced, 0);
}

TEST(write_file_atomic_is_durable_and_private)
{
    char path[600];
    const char *dir = tap_tmpdir(); /* a new directory at every call */
    snprintf(path, sizeof(path), "%s/key", dir);
    mode_t old = umask(0);
    n_synced = 0;
    CHECK_EQ(util_write_file_atomic(path, "secret\n", 7, 0600), 0);
    umask(old);
    /* The data was synced under its temporary name, before the rename. */
    char real[PATH_MAX], tmp[PATH_MAX + 16];
    CHECK(realpath(dir, real) != NULL);
    snprintf(tmp, sizeof(tmp), "%s/key.tmp", real);
    bool data = false;
    for (unsigned i = 0; i < n_synced; i++) data |= strcmp(synced[i], tmp) == 0;
    CHECK(data);
    CHECK(was_synced(dir));
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
}

TEST(private_file_check)
{
    char path[600], why[256];
    const char *dir = tap_tmpdir();
    snprintf(path, sizeof(path), "%s/token", dir);
    CHECK_EQ(util_write_file_atomic(path, "t0ken-t0ken-t0ken\n", 18, 0600), 0);
    CHECK_EQ(util_check_private_file(path, why, sizeof(why)), 0);
    CHECK(chmod(path, 0640) == 0);
    CHECK(util_check_private_file(path, why, sizeof(why)) == -EPERM);
    CHECK(strstr(why, "chmod 0600") != NULL);
    CHECK(chmod(path, 0600) == 0);
    if (geteuid() == 0) {
        /* Owned by another user: refused even at 0600. */
        CHECK(chown(path, 65534, 65534) == 0);
        CHECK(util_check_private_file(path, why, sizeof(why)) == -EPERM);
        CHECK(strstr(why, "chown") != NULL);
    }
    CHECK(util_check_private_file(dir, why, sizeof(why)) == -EINVAL);
}
