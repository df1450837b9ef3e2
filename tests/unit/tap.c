/* tap.c: the runner behind tap.h. */
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAP_MAX 512

static struct {
    const char *name;
    void (*fn)(void);
} tests[TAP_MAX];
static int n_tests;
static void (*corpus_fns[8])(const char *dir);
static int n_corpus;
static bool failed;
static char tmpdir[256];

void tap_register(const char *name, void (*fn)(void))
{
    if (n_tests < TAP_MAX) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void tap_register_corpus(void (*fn)(const char *dir))
{
    if (n_corpus < (int)(sizeof(corpus_fns) / sizeof(corpus_fns[0]))) corpus_fns[n_corpus++] = fn;
}

/* `--write-corpus DIR`: run the corpus writers instead of the tests. */
static int write_corpus(const char *dir)
{
    if (n_corpus == 0) {
        fprintf(stderr, "this test program writes no corpus\n");
        return 2;
    }
    for (int i = 0; i < n_corpus; i++)
        corpus_fns[i](dir);
    return failed ? 1 : 0;
}

void tap_fail(const char *file, int line, const char *expr)
{
    printf("# %s:%d: check failed: %s\n", file, line, expr);
    failed = true;
}

void tap_fail_eq(const char *file, int line, const char *expr, unsigned long long a,
                 unsigned long long b)
{
    printf("# %s:%d: check failed: %s (%llu != %llu)\n", file, line, expr, a, b);
    failed = true;
}

uint64_t tap_seed(void)
{
    static uint64_t seed;
    if (!seed) {
        const char *s = getenv("TEST_SEED");
        seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        if (!seed) seed = 1;
        printf("# seed %llu (replay with TEST_SEED=%llu)\n", (unsigned long long)seed,
               (unsigned long long)seed);
    }
    return seed;
}

static void rm_tmpdir(void)
{
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "# could not remove %s\n", tmpdir);
    }
}

const char *tap_tmpdir(void)
{
    if (tmpdir[0]) rm_tmpdir();
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/blockd-unit-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
    return tmpdir;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    atexit(rm_tmpdir);
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    int selected = 0;
    for (int i = 0; i < n_tests; i++) {
        bool want = argc < 2;
        for (int k = 1; k < argc; k++)
            if (strcmp(argv[k], tests[i].name) == 0) want = true;
        if (want) selected++;
    }
    printf("1..%d\n", selected);
    int k = 0, bad = 0;
    for (int i = 0; i < n_tests; i++) {
        bool want = argc < 2;
        for (int j = 1; j < argc; j++)
            if (strcmp(argv[j], tests[i].name) == 0) want = true;
        if (!want) continue;
        failed = false;
        tests[i].fn();
        printf("%sok %d - %s\n", failed ? "not " : "", ++k, tests[i].name);
        if (failed) bad++;
    }
    return bad ? 1 : 0;
}
