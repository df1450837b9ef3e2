/* test_ctl_progress.c: src/ctl_progress.c, the progress lines of `blockd
 * ctl` commands that wait. */
#include "ctl_progress.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Helpers ---------------------------------------------------------------- */

/* Everything written to F so far, as a string (static buffer). */
static const char *contents(FILE *f)
{
    static char buf[4096];
    fflush(f);
    long n = ftell(f);
    rewind(f);
    size_t got = fread(buf, 1, n > 0 ? (size_t)n : 0, f);
    buf[got] = 0;
    fseek(f, 0, SEEK_END);
    return buf;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int answer_42(void *arg)
{
    (void)arg;
    return 42;
}

/* ---- formatting ---------------------------------------------------------------- */

/* A known total: percent, done/total, rate and ETA, as a log line. */
TEST(format_line_with_total)
{
    char buf[256];
    struct ctl_progress_view v = {.label = "export vol0", .unit = "bytes", .done = 5ull << 30,
                                  .total = 10ull << 30, .rate = 1024.0 * 1024 * 1024,
                                  .elapsed_ms = 5000};
    ctl_progress_format(buf, sizeof(buf), &v, 0);
    CHECK(strstr(buf, "export vol0: 50% ") == buf);
    CHECK(strstr(buf, "ETA 5 s") != NULL);
    CHECK(strstr(buf, "/s") != NULL);
}

/* On a terminal: a bar that fits the width, filled in proportion. */
TEST(format_bar_fits)
{
    char buf[256];
    struct ctl_progress_view v = {.label = "drain", .unit = "", .done = 1, .total = 4,
                                  .rate = -1, .elapsed_ms = 100};
    ctl_progress_format(buf, sizeof(buf), &v, 80);
    CHECK(strlen(buf) <= 80);
    CHECK(strstr(buf, "[") && strstr(buf, "]"));
    CHECK(strstr(buf, " 25%") != NULL);
    CHECK(strstr(buf, "ETA") == NULL); /* no rate yet, so no ETA */
}

/* No total: a waiting line with the elapsed time. */
TEST(format_unknown_total)
{
    char buf[256];
    struct ctl_progress_view v = {.label = "snapshot create v/s", .unit = "", .rate = -1,
                                  .elapsed_ms = 6000};
    ctl_progress_format(buf, sizeof(buf), &v, 0);
    CHECK(strcmp(buf, "snapshot create v/s: still waiting after 6.0 s") == 0);
}

/* ---- behaviour off a terminal ------------------------------------------------------ */

/* A wait that ends quickly prints nothing, and returns the call's result. */
TEST(quick_wait_is_silent)
{
    FILE *f = tmpfile();
    CHECK(f != NULL);
    struct ctl_progress *pg = ctl_progress_start(f, "volume rm v", 0, "");
    CHECK_EQ(ctl_progress_wait(pg, answer_42, NULL), 42);
    ctl_progress_finish(pg, true, "done");
    CHECK_EQ(strlen(contents(f)), 0);
    fclose(f);
}

/* Past the quiet second, one line per tenth of the total, never more, and
 * a final line. */
TEST(one_line_per_tenth)
{
    FILE *f = tmpfile();
    struct ctl_progress *pg = ctl_progress_start(f, "export v", 100, "");
    sleep_ms(CTL_PROGRESS_QUIET_MS + 50);
    for (uint64_t d = 0; d <= 100; d++) ctl_progress_update(pg, d);
    ctl_progress_step(pg, "flushing");
    ctl_progress_finish(pg, true, "exported");
    const char *out = contents(f);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    CHECK_EQ(lines, 10 + 2);
    CHECK(strstr(out, "export v: 100% 100 / 100") != NULL);
    CHECK(strstr(out, "export v: flushing\n") != NULL);
    CHECK(strstr(out, "export v: exported (after ") != NULL);
    CHECK(strchr(out, '\r') == NULL);
    fclose(f);
}

/* A failure says so even when quick. */
TEST(failure_always_reported)
{
    FILE *f = tmpfile();
    struct ctl_progress *pg = ctl_progress_start(f, "drain 12", 0, "");
    ctl_progress_finish(pg, false, "refused: %s", "no leader");
    CHECK(strstr(contents(f), "drain 12: refused: no leader (after ") != NULL);
    fclose(f);
}
