/* ctl_progress.c: see ctl_progress.h.
 *
 * Rate: an exponentially weighted average of the rate between updates
 * (weight 0.3 to the newest), so one stall or burst does not swing the
 * ETA; before two updates there is no rate and no ETA.  ETA = what is
 * left / rate.
 *
 * ctl_progress_wait: the call runs on a thread; the caller's thread wakes
 * every 100 ms to redraw (or, off a terminal, to print a line every
 * CTL_PROGRESS_STILL_MS) until the thread is done.  The thread shares
 * nothing with the display but its done flag and result. */
#include "ctl_progress.h"
#include "base/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct ctl_progress {
    FILE *out;
    char label[128];
    char unit[16];
    bool tty;
    unsigned width;            /* terminal columns */
    uint64_t t0_ms;
    uint64_t total, done;
    uint64_t last_ms, last_done; /* the previous update, for the rate */
    double rate;               /* < 0 unknown */
    bool shown;                /* anything printed: the final line follows */
    bool drawn;                /* a redrawn line is on the terminal now */
    uint64_t last_draw_ms, last_line_ms;
    unsigned last_tenth;       /* off a terminal: the last tenth printed */
    unsigned spin;
};

static void fmt_amount(char *buf, size_t len, uint64_t v, const char *unit)
{
    if (strcmp(unit, "bytes") == 0) util_fmt_size(v, buf, len);
    else snprintf(buf, len, "%llu%s%s", (unsigned long long)v, *unit ? " " : "", unit);
}

static void fmt_secs(char *buf, size_t len, double s)
{
    if (s < 90) snprintf(buf, len, "%.0f s", s);
    else if (s < 5400) snprintf(buf, len, "%.0f min", s / 60);
    else snprintf(buf, len, "%.1f h", s / 3600);
}

char *ctl_progress_format(char *buf, size_t len, const struct ctl_progress_view *v,
                          unsigned width)
{
    char done[32], total[32], rate[48] = "", eta[48] = "", el[32];
    fmt_amount(done, sizeof(done), v->done, v->unit);
    fmt_amount(total, sizeof(total), v->total, v->unit);
    if (v->rate >= 0) {
        char r[32];
        fmt_amount(r, sizeof(r), (uint64_t)v->rate, v->unit);
        snprintf(rate, sizeof(rate), "%s/s", r);
        if (v->total > v->done && v->rate > 0) {
            char e[24];
            fmt_secs(e, sizeof(e), (double)(v->total - v->done) / v->rate);
            snprintf(eta, sizeof(eta), "ETA %s", e);
        }
    }
    fmt_secs(el, sizeof(el), (double)v->elapsed_ms / 1000.0);
    if (v->elapsed_ms < 10000) snprintf(el, sizeof(el), "%.1f s", (double)v->elapsed_ms / 1000.0);
    if (!v->total) {
        static const char spin[] = "|/-\\";
        if (width)
            snprintf(buf, len, "%s  %c  %s%s%s  %s", v->label, spin[v->spin % 4],
                     v->done ? done : "waiting", *rate ? "  " : "", rate, el);
        else
            snprintf(buf, len, "%s: %s after %s%s%s", v->label, v->done ? done : "still waiting",
                     el, *rate ? ", " : "", rate);
        return buf;
    }
    unsigned pct = (unsigned)BD_MIN(100, v->done * 100 / v->total);
    if (!width) {
        snprintf(buf, len, "%s: %u%% %s / %s%s%s%s%s", v->label, pct, done, total,
                 *rate ? ", " : "", rate, *eta ? ", " : "", eta);
        return buf;
    }
    char tail[256];
    snprintf(tail, sizeof(tail), " %3u%%  %s / %s%s%s%s%s", pct, done, total, *rate ? "  " : "",
             rate, *eta ? "  " : "", eta);
    size_t fixed = strlen(v->label) + 4 + strlen(tail);
    unsigned bar = width > fixed + 10 ? (unsigned)BD_MIN(width - fixed, 40) : 10;
    char b[48];
    unsigned fill = (unsigned)((uint64_t)bar * BD_MIN(v->done, v->total) / v->total);
    for (unsigned i = 0; i < bar; i++) b[i] = i < fill ? '#' : '-';
    b[bar] = 0;
    snprintf(buf, len, "%s  [%s]%s", v->label, b, tail);
    return buf;
}

static uint64_t now_ms(void)
{
    return util_mono_ms();
}

struct ctl_progress *ctl_progress_start(FILE *out, const char *label, uint64_t total,
                                        const char *unit)
{
    struct ctl_progress *pg = calloc(1, sizeof(*pg));
    if (!pg) return NULL;
    pg->out = out;
    util_strlcpy(pg->label, label, sizeof(pg->label));
    util_strlcpy(pg->unit, unit ? unit : "", sizeof(pg->unit));
    pg->tty = isatty(fileno(out));
    struct winsize ws;
    pg->width = pg->tty && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;
    pg->t0_ms = pg->last_ms = pg->last_line_ms = now_ms();
    pg->total = total;
    pg->rate = -1;
    return pg;
}

void ctl_progress_set_total(struct ctl_progress *pg, uint64_t total)
{
    if (pg) pg->total = total;
}

static struct ctl_progress_view view(const struct ctl_progress *pg, uint64_t now)
{
    return (struct ctl_progress_view){.label = pg->label, .unit = pg->unit, .done = pg->done,
                                      .total = pg->total, .rate = pg->rate,
                                      .elapsed_ms = now - pg->t0_ms, .spin = pg->spin};
}

static void erase(struct ctl_progress *pg)
{
    if (!pg->drawn) return;
    fputs("\r\033[K", pg->out);
    pg->drawn = false;
}

/* Redraw (terminal) or print a line when one is due (elsewhere). */
static void show(struct ctl_progress *pg, bool force)
{
    uint64_t now = now_ms();
    if (now - pg->t0_ms < CTL_PROGRESS_QUIET_MS && !force) return;
    char line[512];
    struct ctl_progress_view v = view(pg, now);
    if (pg->tty) {
        if (!force && now - pg->last_draw_ms < 100) return;
        pg->last_draw_ms = now;
        pg->spin++;
        v.spin = pg->spin;
        ctl_progress_format(line, sizeof(line), &v, pg->width);
        if (strlen(line) >= pg->width) line[pg->width - 1] = 0;
        fprintf(pg->out, "\r\033[K%s", line);
        fflush(pg->out);
        pg->drawn = pg->shown = true;
        return;
    }
    bool due;
    if (pg->total) {
        unsigned tenth = (unsigned)BD_MIN(10, pg->done * 10 / pg->total);
        due = tenth > pg->last_tenth;
        if (due) pg->last_tenth = tenth;
    } else {
        due = now - pg->last_line_ms >= CTL_PROGRESS_STILL_MS;
    }
    if (!due && !force) return;
    pg->last_line_ms = now;
    fprintf(pg->out, "%s\n", ctl_progress_format(line, sizeof(line), &v, 0));
    fflush(pg->out);
    pg->shown = true;
}

void ctl_progress_update(struct ctl_progress *pg, uint64_t done)
{
    if (!pg) return;
    uint64_t now = now_ms();
    if (now > pg->last_ms && done >= pg->last_done) {
        double r = (double)(done - pg->last_done) * 1000.0 / (double)(now - pg->last_ms);
        pg->rate = pg->rate < 0 ? r : 0.7 * pg->rate + 0.3 * r;
        pg->last_ms = now;
        pg->last_done = done;
    } else if (done < pg->last_done) {
        pg->last_done = done;
        pg->last_ms = now;
    }
    pg->done = done;
    show(pg, false);
}

void ctl_progress_step(struct ctl_progress *pg, const char *fmt, ...)
{
    if (!pg) return;
    erase(pg);
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(pg->out, "%s: %s\n", pg->label, msg);
    fflush(pg->out);
    pg->shown = true;
    if (pg->tty) show(pg, false);
}

struct waiter {
    int (*fn)(void *arg);
    void *arg;
    int rc;
    _Atomic bool done;
};

static void *wait_thread(void *a)
{
    struct waiter *w = a;
    w->rc = w->fn(w->arg);
    atomic_store(&w->done, true);
    return NULL;
}

int ctl_progress_wait(struct ctl_progress *pg, int (*fn)(void *arg), void *arg)
{
    if (!pg) return fn(arg);
    struct waiter w = {.fn = fn, .arg = arg};
    pthread_t t;
    if (pthread_create(&t, NULL, wait_thread, &w) != 0) return fn(arg);
    while (!atomic_load(&w.done)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (!atomic_load(&w.done)) show(pg, false);
    }
    pthread_join(t, NULL);
    return w.rc;
}

void ctl_progress_finish(struct ctl_progress *pg, bool ok, const char *fmt, ...)
{
    if (!pg) return;
    erase(pg);
    if (fmt && (pg->shown || !ok)) {
        char msg[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        char el[32];
        fmt_secs(el, sizeof(el), (double)(now_ms() - pg->t0_ms) / 1000.0);
        fprintf(pg->out, "%s: %s (after %s)\n", pg->label, msg, el);
        fflush(pg->out);
    }
    free(pg);
}
