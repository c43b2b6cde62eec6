/* Unit tests for lib/status_page.c: a view with known figures renders them as formatted, escaped
 * text; charts fall back to "no data yet" under two points and never print NaN or infinity; an
 * empty view (no snapshot) still makes a whole document. With TYTO_STATUS_SAMPLE=PATH set, the
 * sample page is also written to PATH and the empty one to PATH.empty.html (to look at them). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "lib/status_page.h"

#define NOW 1796212800              /* 2026-12-02 12:00 UTC */

/* ---- helpers ---- */

/* Renders v; returns the page as a NUL-terminated string the caller frees. */
static char *render(const struct status_view *v)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *s;

    assert_non_null(b);
    status_page_render(v, b);
    n = evbuffer_get_length(b);
    s = malloc(n + 1);
    assert_non_null(s);
    assert_int_equal(evbuffer_remove(b, s, n), (int)n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

#define assert_has(page, lit)                                                              \
    do {                                                                                   \
        if (!strstr((page), (lit)))                                                        \
            fail_msg("missing from the page: %s", (lit));                                  \
    } while (0)

/* The page is one document: doctype first, "</html>\n" last, no script anywhere. */
static void assert_document(const char *page)
{
    size_t n = strlen(page);

    assert_memory_equal(page, "<!DOCTYPE html>\n", 16);
    assert_true(n > 8);
    assert_string_equal(page + n - 8, "</html>\n");
    assert_null(strstr(page, "<script"));
    assert_null(strstr(page, "<SCRIPT"));
    assert_has(page, "<meta name=\"viewport\"");
    assert_has(page, "<meta charset=\"utf-8\">");
}

/* Neither "nan" nor "inf" (any case) inside any <svg>...</svg>. */
static void assert_svg_finite(const char *page)
{
    for (const char *p = strstr(page, "<svg"); p; p = strstr(p, "<svg")) {
        const char *end = strstr(p, "</svg>");
        assert_non_null(end);
        for (const char *q = p; q < end; q++) {
            if (strncasecmp(q, "nan", 3) == 0 || strncasecmp(q, "inf", 3) == 0)
                fail_msg("non-finite number in a chart near: %.60s", q);
        }
        p = end;
    }
}

/* The text as the page must show it (HTML-escaped), to look for definitions we do not own. */
static void escape(const char *s, char *out, size_t cap)
{
    size_t k = 0;

    for (; *s && k + 7 < cap; s++) {
        const char *r = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;"
                      : *s == '"' ? "&quot;" : *s == '\'' ? "&#39;" : NULL;
        if (r) {
            memcpy(out + k, r, strlen(r));
            k += strlen(r);
        } else {
            out[k++] = *s;
        }
    }
    out[k] = '\0';
}

/* With TYTO_STATUS_SAMPLE=PATH, writes page to PATH followed by suffix, to look at in a browser. */
static void sample_write(const char *page, const char *suffix)
{
    const char *dir = getenv("TYTO_STATUS_SAMPLE");
    char path[4096];
    FILE *f;

    if (!dir || !*dir)
        return;
    snprintf(path, sizeof(path), "%s%s", dir, suffix);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(page, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* ---- a sample view ---- */

#define NDAY 1440
#define NMONTH 720

struct sample {
    struct status_point day[NDAY], month[NMONTH];
    struct status_swarm busiest[3], flagged[2];
    struct status_worker workers[3];
    struct status_view v;
};

/* A wavy but known series: peers peak at 1,400 (the last day point), swarms at 310. */
static void sample_series(struct sample *s)
{
    for (int i = 0; i < NDAY; i++) {
        int w = i % 240 < 120 ? i % 240 : 240 - i % 240;     /* 0..120 triangle wave */
        s->day[i].t_s = NOW - (int64_t)(NDAY - i) * 60;
        s->day[i].swarms = 250 + (uint64_t)w / 2;
        s->day[i].peers = 700 + (uint64_t)i * 700 / (NDAY - 1) - (uint64_t)w;
        s->day[i].announces_per_s = 20 + w / 4.0;
    }
    s->day[NDAY - 1].peers = 1400;
    for (int i = 0; i < NMONTH; i++) {
        s->month[i].t_s = NOW - (int64_t)(NMONTH - i) * 3600;
        s->month[i].swarms = 100 + (uint64_t)i / 4;
        s->month[i].peers = 300 + (uint64_t)i + (uint64_t)(i % 24) * 10;
        s->month[i].announces_per_s = 5 + (i % 24) / 2.0;
    }
}

static void sample_swarms(struct sample *s)
{
    static const char *const hex[3] = {
        "0123456789abcdef0123456789abcdef01234567",
        "89abcdef0123456789abcdef0123456789abcdef",
        "ffffffffffffffffffffffffffffffffffff0000",
    };
    for (int i = 0; i < 3; i++) {
        struct status_swarm *w = &s->busiest[i];
        snprintf(w->hex, sizeof(w->hex), "%s", hex[i]);
        w->seeders = 1200 / (uint64_t)(i + 1);
        w->leechers = 340 / (uint64_t)(i + 1);
        w->downloaded = 98765 / (uint64_t)(i + 1);
        w->announces = 4321 / (uint64_t)(i + 1);
    }
    s->busiest[1].flags = 1u << ANOMALY_ANNOUNCE_SPIKE;
    s->flagged[0] = s->busiest[1];
    snprintf(s->flagged[0].reason, sizeof(s->flagged[0].reason),
             "412 announces in the last minute, 9.8x the hour's mean <spike> & \"more\"");
    struct status_swarm *f = &s->flagged[1];
    snprintf(f->hex, sizeof(f->hex), "%s", "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef");
    f->flags = 1u << ANOMALY_FAST_ANNOUNCE | 1u << ANOMALY_CROWDED_ADDRESS;
    f->leechers = 64;
    snprintf(f->reason, sizeof(f->reason), "%s", "64 peers on 203.0.113.9 (ports 6881-6944)");
}

static void sample_workers(struct sample *s)
{
    for (int i = 0; i < 3; i++) {
        s->workers[i] = (struct status_worker){ .slot = i, .pid = 4242 + i, .ready = i != 1,
                                                .generation = 3, .requests = 9876543 / (uint64_t)(i + 1),
                                                .open_connections = 17 - i, .inflight = 2 };
    }
    s->workers[2].pid = 0;
}

static void sample_init(struct sample *s)
{
    memset(s, 0, sizeof(*s));
    sample_series(s);
    sample_swarms(s);
    sample_workers(s);
    s->v = (struct status_view){
        .now_s = NOW, .have_snapshot = true, .snapshot_s = NOW - 12, .aggregator = "agg&1:77",
        .swarms = 12345, .peers = 1234567, .seeders4 = 800000, .seeders6 = 34567,
        .leechers4 = 400000, .leechers6 = 0, .downloaded = 3141592653u,
        .announces_per_s = 123.45, .scrapes_per_s = 0.04,
        .anomalies = { [ANOMALY_FAST_ANNOUNCE] = 1, [ANOMALY_CROWDED_ADDRESS] = 1,
                       [ANOMALY_ANNOUNCE_SPIKE] = 2 },
        .day = s->day, .nday = NDAY, .month = s->month, .nmonth = NMONTH,
        .busiest = s->busiest, .nbusiest = 3, .flagged = s->flagged, .nflagged = 2,
        .workers = s->workers, .nworkers = 3, .host = "a<b",
    };
}

/* ---- tests ---- */

static void test_status_page_full_view(void **state)
{
    struct sample *s = malloc(sizeof(*s));
    char *page;

    (void)state;
    assert_non_null(s);
    sample_init(s);
    page = render(&s->v);
    assert_document(page);
    assert_has(page, "<title>Tyto \xc2\xb7 a&lt;b</title>");
    assert_has(page, "a&lt;b \xc2\xb7 snapshot 12 s ago by agg&amp;1:77</p>");
    assert_null(strstr(page, "a<b"));
    assert_null(strstr(page, "No statistics yet"));
    /* cards */
    assert_has(page, "<h3>Swarms</h3><div class=\"big\">12,345</div>");
    assert_has(page, "<h3>Peers</h3><div class=\"big\">1.23M</div>"
                     "<div class=\"sub\">1,234,567<br>IPv4 1,200,000 \xc2\xb7 IPv6 34,567</div>");
    assert_has(page, "<h3>Seeders</h3><div class=\"big\">834,567</div>"
                     "<div class=\"sub\">IPv4 800,000 \xc2\xb7 IPv6 34,567</div>");
    assert_has(page, "<h3>Leechers</h3><div class=\"big\">400,000</div>");
    assert_has(page, "<div class=\"big\">3.14G</div><div class=\"sub\">3,141,592,653<br>all time</div>");
    assert_has(page, "<h3>Announces/s</h3><div class=\"big\">123</div>");
    assert_has(page, "<h3>Scrapes/s</h3><div class=\"big\">0.04</div>");
    /* charts: six, peers' axis 0..1.5k in 500s, time labels */
    assert_int_equal(count(page, "<svg"), 6);
    assert_int_equal(count(page, "</svg>"), 6);
    assert_int_equal(count(page, "no data yet"), 0);
    assert_has(page, "viewBox=\"0 0 400 170\"");
    assert_has(page, "text-anchor=\"end\">1.5k</text>");
    assert_has(page, "text-anchor=\"end\">500</text>");
    assert_has(page, "<span class=\"sub\">1.4k latest \xc2\xb7 1.4k max</span>");
    assert_has(page, ">24 h ago</text>");
    assert_has(page, ">now</text>");
    assert_has(page, ">2026-11-02</text>");
    assert_has(page, ">2026-12-02</text>");
    assert_svg_finite(page);
    /* busiest: shortened hash, the whole of it in the title and the details */
    assert_has(page, "<summary title=\"0123456789abcdef0123456789abcdef01234567\"><code>"
                     "01234567\xe2\x80\xa6" "4567</code></summary>"
                     "<code class=\"full\">0123456789abcdef0123456789abcdef01234567</code>");
    assert_has(page, "<td class=\"n\">1,200</td><td class=\"n\">340</td><td class=\"n\">98,765</td>"
                     "<td class=\"n\">4,321</td>");
    /* flagged: badges and the escaped reason */
    assert_has(page, "<td class=\"wrap\"><span class=\"badge\">announce_spike</span><div class=\"reason\">"
                     "412 announces in the last minute, 9.8x the hour&#39;s mean &lt;spike&gt; &amp; "
                     "&quot;more&quot;</div></td>");
    assert_has(page, "<span class=\"badge\">fast_announce</span><span class=\"badge\">crowded_address</span>");
    assert_has(page, "64 peers on 203.0.113.9 (ports 6881-6944)");
    /* anomalies by kind, with their definitions */
    static const unsigned swarms[ANOMALY_KINDS] = { 1, 1, 0, 0, 2 };
    for (int k = 0; k < ANOMALY_KINDS; k++) {
        char text[400], want[600];
        escape(anomaly_kind_text((enum anomaly_kind)k), text, sizeof(text));
        assert_true(strlen(text) > 0);
        snprintf(want, sizeof(want),
                 "<span class=\"badge%s\">%s</span><div class=\"reason sub\">%s</div></td><td class=\"n\">%u</td>",
                 swarms[k] ? "" : " off", anomaly_kind_name((enum anomaly_kind)k), text, swarms[k]);
        assert_has(page, want);
    }
    /* workers */
    assert_has(page, "<h2 id=\"workers\">Workers on a&lt;b</h2>");
    assert_has(page, "<td class=\"n\">0</td><td class=\"n\">4242</td><td><span class=\"badge ok\">ready</span>"
                     "</td><td class=\"n\">3</td><td class=\"n\">9,876,543</td><td class=\"n\">17</td>"
                     "<td class=\"n\">2</td>");
    assert_has(page, "<td class=\"n\">4243</td><td><span class=\"badge warn\">starting</span>");
    assert_has(page, "<td class=\"n\">2</td><td class=\"n\">\xe2\x80\x94</td><td><span class=\"badge off\">"
                     "empty</span>");
    assert_has(page, "Rendered 2026-12-02 12:00 UTC");
    sample_write(page, "");
    free(page);
    free(s);
}

static void test_status_page_short_series(void **state)
{
    struct sample *s = malloc(sizeof(*s));
    char *page;

    (void)state;
    assert_non_null(s);
    sample_init(s);
    s->v.nday = 1;                  /* one point: not a line */
    s->v.month = NULL;
    s->v.nmonth = 0;
    page = render(&s->v);
    assert_document(page);
    assert_int_equal(count(page, "<svg"), 0);
    assert_int_equal(count(page, "<p class=\"empty\">no data yet</p>"), 6);
    free(page);

    s->v.nday = 2;
    page = render(&s->v);
    assert_int_equal(count(page, "<svg"), 3);
    assert_int_equal(count(page, "no data yet"), 3);
    assert_svg_finite(page);
    free(page);
    free(s);
}

static void test_status_page_empty_view(void **state)
{
    struct status_view v;
    char *page;

    (void)state;
    memset(&v, 0, sizeof(v));
    v.now_s = NOW;
    page = render(&v);
    assert_document(page);
    assert_has(page, "<title>Tyto</title>");
    assert_has(page, "No statistics yet: no aggregator has written a snapshot");
    assert_has(page, "No worker is running.");
    assert_null(strstr(page, "<svg"));
    assert_null(strstr(page, "snapshot 0 s ago"));
    sample_write(page, ".empty.html");
    free(page);
}

static void test_status_page_huge_and_broken_values(void **state)
{
    struct status_point pts[6];
    struct status_view v;
    char *page;

    (void)state;
    memset(pts, 0, sizeof(pts));
    for (int i = 0; i < 6; i++)
        pts[i].t_s = NOW - 600 + i * 100;
    pts[3].peers = UINT64_MAX;
    pts[3].swarms = UINT64_MAX;
    pts[1].announces_per_s = NAN;
    pts[2].announces_per_s = INFINITY;
    pts[3].announces_per_s = -5;
    pts[4].announces_per_s = 1e308;
    memset(&v, 0, sizeof(v));
    v.now_s = NOW;
    v.have_snapshot = true;
    v.snapshot_s = NOW + 30;        /* a clock ahead of ours: "0 s", not negative */
    v.announces_per_s = NAN;
    v.scrapes_per_s = -INFINITY;
    v.day = pts;
    v.nday = 6;
    v.month = pts;                  /* all points at the same second but the span still > 0 */
    v.nmonth = 6;
    page = render(&v);
    assert_document(page);
    assert_int_equal(count(page, "<svg"), 6);
    assert_svg_finite(page);
    assert_has(page, "snapshot 0 s ago</p>");
    assert_has(page, "<h3>Announces/s</h3><div class=\"big\">0</div>");
    assert_has(page, "<h3>Scrapes/s</h3><div class=\"big\">0</div>");
    assert_has(page, "<h3>Peers</h3><div class=\"big\">0</div>");
    assert_has(page, "text-anchor=\"end\">20E</text>");
    assert_null(strstr(page, "nan"));
    assert_null(strstr(page, "NaN"));
    free(page);

    /* every point at one instant: no division by a zero span */
    for (int i = 0; i < 6; i++)
        pts[i].t_s = NOW;
    page = render(&v);
    assert_svg_finite(page);
    assert_int_equal(count(page, "<svg"), 6);
    free(page);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_status_page_full_view),
        cmocka_unit_test(test_status_page_short_series),
        cmocka_unit_test(test_status_page_empty_view),
        cmocka_unit_test(test_status_page_huge_and_broken_values),
    };
    return cmocka_run_group_tests_name("status_page", t, NULL, NULL);
}
