/* The status page renderer: struct status_view in, one HTML5 document out (the admin listener's
 * GET /). Everything is computed here, charts included (inline SVG), so the page needs no script
 * and no other resource. Numbers never go through printf's %f: doubles are rounded to integers
 * first, so the output knows no locale and never says "nan" or "inf". */
#include "lib/status_page.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#define STATUS_PAGE_NUM 32          /* room for any formatted number or label */

/* Chart geometry, in SVG user units; the svg scales to its box (viewBox, width 100%). */
#define CHART_W 400
#define CHART_H 170
#define CHART_LEFT 46               /* room for the value labels */
#define CHART_RIGHT 392
#define CHART_TOP 10
#define CHART_BOTTOM 146            /* the time labels sit below */

enum status_series { SERIES_SWARMS, SERIES_PEERS, SERIES_ANNOUNCES };

/* ---- text and numbers ---- */

/* Appends n bytes of s, HTML-escaped (text and attribute values alike). Control bytes become '?'
 * so that no data can break the document's structure. */
static void status_page_escape_n(struct evbuffer *out, const char *s, size_t n)
{
    size_t run = 0;                 /* bytes of s[i - run, i) that need no escape */

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        switch (c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default:
            if (c < 0x20 || c == 0x7f)
                rep = "?";
        }
        if (!rep) {
            run++;
            continue;
        }
        evbuffer_add(out, s + i - run, run);
        evbuffer_add(out, rep, strlen(rep));
        run = 0;
    }
    evbuffer_add(out, s + n - run, run);
}

/* NULL is the empty string. */
static void status_page_escape(struct evbuffer *out, const char *s)
{
    if (s)
        status_page_escape_n(out, s, strlen(s));
}

static void status_page_puts(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, s, strlen(s));
}

/* Non-finite and negative figures are shown as 0: a page is no place for "nan". */
static double status_page_clean(double x)
{
    return x == x && x > 0 && x <= 1e300 ? x : 0;
}

/* Rounds a non-negative double to the nearest integer, without libm. */
static uint64_t status_page_round(double x)
{
    x = status_page_clean(x);
    return x >= 18446744073709549568.0 ? UINT64_MAX : (uint64_t)(x + 0.5);
}

/* 1234567 -> "1,234,567". Returns buf. */
static const char *status_page_count(char *buf, size_t cap, uint64_t n)
{
    char digits[STATUS_PAGE_NUM];
    int len = snprintf(digits, sizeof(digits), "%" PRIu64, n);
    size_t k = 0;

    for (int i = 0; i < len && k + 1 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0 && k + 2 < cap)
            buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = '\0';
    return buf;
}

/* As status_page_count, with a sign: gauges such as open connections are signed. */
static const char *status_page_signed(char *buf, size_t cap, int64_t n)
{
    if (n >= 0)
        return status_page_count(buf, cap, (uint64_t)n);
    buf[0] = '-';
    status_page_count(buf + 1, cap - 1, (uint64_t)0 - (uint64_t)n);
    return buf;
}

/* A rate: "0", "0.04" under 1, "12.3" under 100, then whole numbers with separators ("1,234"). */
static const char *status_page_rate(char *buf, size_t cap, double x)
{
    uint64_t hundredths = status_page_round(status_page_clean(x) * 100);

    if (hundredths == 0)
        snprintf(buf, cap, "0");
    else if (hundredths < 100)
        snprintf(buf, cap, "0.%02" PRIu64, hundredths);
    else if (hundredths < 9995)
        snprintf(buf, cap, "%" PRIu64 ".%" PRIu64, (hundredths + 5) / 100, (hundredths + 5) / 10 % 10);
    else
        status_page_count(buf, cap, status_page_round(x));
    return buf;
}

/* Compact: "950", "0.25", "1.2k", "3.4M" (chart labels, one decimal at most); with three, three
 * significant digits ("1.23M", "45.6k", "314G") for the big figures. No trailing zeros. */
static const char *status_page_human(char *buf, size_t cap, double x, bool three)
{
    static const char *const suffix[] = { "", "k", "M", "G", "T", "P", "E" };
    double limit = three ? 999.5 : 999.95;  /* what would round up to "1000" */
    size_t s = 0;

    x = status_page_clean(x);
    while (x >= limit && s + 1 < sizeof(suffix) / sizeof(suffix[0])) {
        x /= 1000;
        s++;
    }
    int d = s == 0 ? 2 : !three ? 1 : x < 9.995 ? 2 : x < 99.95 ? 1 : 0;
    uint64_t scale = d == 2 ? 100 : d == 1 ? 10 : 1;
    uint64_t v = status_page_round(x * (double)scale), whole = v / scale, frac = v % scale;

    if (frac == 0)
        snprintf(buf, cap, "%" PRIu64 "%s", whole, suffix[s]);
    else if (d == 1 || frac % 10 == 0)
        snprintf(buf, cap, "%" PRIu64 ".%" PRIu64 "%s", whole, d == 1 ? frac : frac / 10, suffix[s]);
    else
        snprintf(buf, cap, "%" PRIu64 ".%02" PRIu64 "%s", whole, frac, suffix[s]);
    return buf;
}

/* A duration to the nearest unit a person reads: "12 s", "5 min", "24 h", "3 d". */
static const char *status_page_ago(char *buf, size_t cap, int64_t secs)
{
    if (secs < 0)
        secs = 0;
    if (secs < 120)
        snprintf(buf, cap, "%" PRId64 " s", secs);
    else if (secs < 2 * 3600)
        snprintf(buf, cap, "%" PRId64 " min", (secs + 30) / 60);
    else if (secs < 72 * 3600)
        snprintf(buf, cap, "%" PRId64 " h", (secs + 1800) / 3600);
    else
        snprintf(buf, cap, "%" PRId64 " d", (secs + 43200) / 86400);
    return buf;
}

/* Unix seconds -> "2026-11-03" (UTC; with_time adds " 14:05 UTC"). */
static const char *status_page_date(char *buf, size_t cap, int64_t t_s, int with_time)
{
    time_t t = (time_t)t_s;
    struct tm tm;

    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, cap, "?");
        return buf;
    }
    strftime(buf, cap, with_time ? "%Y-%m-%d %H:%M UTC" : "%Y-%m-%d", &tm);
    return buf;
}

/* ---- document frame ---- */

static const char status_page_css[] =
    ":root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--fg:#1c2430;--muted:#5d6878;"
    "--line:#dde1e7;--accent:#2b6cb0;--fill:rgba(43,108,176,.16);--warn-bg:#fff4d6;--warn:#7a5300;"
    "--bad:#b42318;--bad-bg:#fde7e4;--ok:#1a7f37;--ok-bg:#dcf3e3}\n"
    "@media (prefers-color-scheme:dark){:root{--bg:#11151b;--card:#1a2029;--fg:#e4e8ee;"
    "--muted:#9aa5b4;--line:#2c3440;--accent:#6cb0f5;--fill:rgba(108,176,245,.18);"
    "--warn-bg:#3a2f12;--warn:#f3cf7a;--bad:#ff8f80;--bad-bg:#43201c;--ok:#6fdc8c;--ok-bg:#15331f}}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"
    "\"Segoe UI\",Roboto,sans-serif}\n"
    "main{max-width:1280px;margin:0 auto;padding:16px}\n"
    "header{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 16px;margin-bottom:12px}\n"
    "h1{font-size:26px;margin:0}h2{font-size:18px;margin:28px 0 10px}"
    "h3{font-size:14px;margin:0;color:var(--muted);font-weight:600}\n"
    ".meta{color:var(--muted);margin:0;overflow-wrap:anywhere}\n"
    ".notice{background:var(--warn-bg);color:var(--warn);border-radius:8px;padding:12px 14px;"
    "font-weight:600}\n"
    ".cards,.charts{display:grid;gap:12px}\n"
    ".cards{grid-template-columns:repeat(auto-fit,minmax(150px,1fr))}\n"
    ".charts{grid-template-columns:repeat(auto-fit,minmax(300px,1fr))}\n"
    ".card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px;"
    "min-width:0}\n"
    ".big{font-size:28px;font-weight:700;line-height:1.2;font-variant-numeric:tabular-nums;"
    "white-space:nowrap}\n"
    ".sub{color:var(--muted);font-size:13px}\n"
    ".chart-head{display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 8px}\n"
    "svg.chart{display:block;width:100%;height:auto;margin-top:6px}\n"
    "svg.chart text{font-size:13px;fill:var(--muted)}\n"
    "svg.chart .grid{stroke:var(--line);stroke-width:1}\n"
    "svg.chart .area{fill:var(--fill);stroke:none}\n"
    "svg.chart .line{fill:none;stroke:var(--accent);stroke-width:2;stroke-linejoin:round}\n"
    ".empty{color:var(--muted);text-align:center;padding:40px 0;margin:0}\n"
    ".scroll{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:10px}\n"
    "table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}\n"
    "th,td{padding:7px 12px;text-align:left;border-bottom:1px solid var(--line);white-space:nowrap;"
    "vertical-align:top}\n"
    "tr:last-child td{border-bottom:0}th{color:var(--muted);font-weight:600;font-size:13px}\n"
    "td.n,th.n{text-align:right}td.wrap{white-space:normal;min-width:200px}.reason{margin-top:2px}\n"
    "code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\n"
    "details code.full{display:block;white-space:normal;word-break:break-all;max-width:22em;"
    "color:var(--muted)}\n"
    "summary{cursor:pointer}\n"
    ".badge{display:inline-block;font:12px ui-monospace,Menlo,Consolas,monospace;padding:1px 7px;"
    "border-radius:999px;background:var(--bad-bg);color:var(--bad);margin:1px 4px 1px 0}\n"
    ".badge.ok{background:var(--ok-bg);color:var(--ok)}\n"
    ".badge.warn{background:var(--warn-bg);color:var(--warn)}\n"
    ".badge.off{background:var(--line);color:var(--muted)}\n"
    "footer{color:var(--muted);font-size:13px;margin:28px 0 8px}a{color:var(--accent)}\n"
    "@media (max-width:480px){main{padding:10px}.big{font-size:23px}th,td{padding:6px 8px}}\n";

static void status_page_head(const struct status_view *v, struct evbuffer *out)
{
    status_page_puts(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                          "<meta http-equiv=\"refresh\" content=\"60\">\n<title>Tyto");
    if (v->host && v->host[0]) {
        status_page_puts(out, " \xc2\xb7 ");
        status_page_escape(out, v->host);
    }
    status_page_puts(out, "</title>\n<style>\n");
    evbuffer_add(out, status_page_css, sizeof(status_page_css) - 1);
    status_page_puts(out, "</style>\n</head>\n<body>\n<main>\n");
}

static void status_page_header(const struct status_view *v, struct evbuffer *out)
{
    char age[STATUS_PAGE_NUM];

    status_page_puts(out, "<header><h1>Tyto</h1><p class=\"meta\">");
    if (v->host && v->host[0]) {
        status_page_escape(out, v->host);
        status_page_puts(out, " \xc2\xb7 ");
    }
    if (v->have_snapshot) {
        status_page_ago(age, sizeof(age), v->now_s - v->snapshot_s);
        evbuffer_add_printf(out, "snapshot %s ago", age);
        if (v->aggregator && v->aggregator[0]) {
            status_page_puts(out, " by ");
            status_page_escape(out, v->aggregator);
        }
    } else {
        status_page_puts(out, "no snapshot");
    }
    status_page_puts(out, "</p></header>\n");
    if (!v->have_snapshot)
        status_page_puts(out, "<p class=\"notice\">No statistics yet: no aggregator has written a "
                              "snapshot. This host's workers are below; the rest appears once the "
                              "statistics aggregator has run.</p>\n");
}

static void status_page_foot(const struct status_view *v, struct evbuffer *out)
{
    char when[STATUS_PAGE_NUM];

    evbuffer_add_printf(out, "<footer>Rendered %s \xc2\xb7 refreshes every minute \xc2\xb7 "
                             "<a href=\"/stats\">/stats</a> \xc2\xb7 <a href=\"/metrics\">/metrics</a>"
                             "</footer>\n</main>\n</body>\n</html>\n",
                        status_page_date(when, sizeof(when), v->now_s, 1));
}

/* ---- global figures ---- */

/* One big-number card; sub (already HTML, or NULL) is the small line under the number. */
static void status_page_card(struct evbuffer *out, const char *label, const char *value, const char *sub)
{
    evbuffer_add_printf(out, "<div class=\"card\"><h3>%s</h3><div class=\"big\">%s</div>", label, value);
    if (sub)
        evbuffer_add_printf(out, "<div class=\"sub\">%s</div>", sub);
    status_page_puts(out, "</div>\n");
}

/* A count card: up to 999,999 as it is; above, "1.23M" big (so that it fits a phone's half width)
 * with the exact figure under it. */
static void status_page_card_count(struct evbuffer *out, const char *label, uint64_t n, const char *sub)
{
    char big[STATUS_PAGE_NUM], exact[STATUS_PAGE_NUM], both[3 * STATUS_PAGE_NUM + 64];

    status_page_count(exact, sizeof(exact), n);
    if (n < 1000000) {
        status_page_card(out, label, exact, sub);
        return;
    }
    snprintf(both, sizeof(both), "%s%s%s", exact, sub ? "<br>" : "", sub ? sub : "");
    status_page_card(out, label, status_page_human(big, sizeof(big), (double)n, true), both);
}

/* "IPv4 1,234 · IPv6 56" */
static const char *status_page_split(char *buf, size_t cap, uint64_t v4, uint64_t v6)
{
    char a[STATUS_PAGE_NUM], b[STATUS_PAGE_NUM];

    snprintf(buf, cap, "IPv4 %s \xc2\xb7 IPv6 %s", status_page_count(a, sizeof(a), v4),
             status_page_count(b, sizeof(b), v6));
    return buf;
}

static void status_page_cards(const struct status_view *v, struct evbuffer *out)
{
    char n[STATUS_PAGE_NUM], sub[2 * STATUS_PAGE_NUM + 32];

    status_page_puts(out, "<section class=\"cards\">\n");
    status_page_card_count(out, "Swarms", v->swarms, NULL);
    status_page_card_count(out, "Peers", v->peers,
                           status_page_split(sub, sizeof(sub), v->seeders4 + v->leechers4,
                                             v->seeders6 + v->leechers6));
    status_page_card_count(out, "Seeders", v->seeders4 + v->seeders6,
                           status_page_split(sub, sizeof(sub), v->seeders4, v->seeders6));
    status_page_card_count(out, "Leechers", v->leechers4 + v->leechers6,
                           status_page_split(sub, sizeof(sub), v->leechers4, v->leechers6));
    status_page_card_count(out, "Completed downloads", v->downloaded, "all time");
    status_page_card(out, "Announces/s", status_page_rate(n, sizeof(n), v->announces_per_s), NULL);
    status_page_card(out, "Scrapes/s", status_page_rate(n, sizeof(n), v->scrapes_per_s), NULL);
    status_page_puts(out, "</section>\n");
}

/* ---- charts ---- */

struct chart_scale {
    double top, step;               /* axis from 0 to top, a gridline every step */
};

static double status_page_value(const struct status_point *p, enum status_series s)
{
    switch (s) {
    case SERIES_SWARMS: return (double)p->swarms;
    case SERIES_PEERS: return (double)p->peers;
    case SERIES_ANNOUNCES: return status_page_clean(p->announces_per_s);
    }
    return 0;
}

/* A 1, 2 or 5 times a power of ten step giving 2 to 4 intervals up to at least max;
 * min_step keeps counts on whole numbers. */
static struct chart_scale status_page_scale(double max, double min_step)
{
    struct chart_scale sc;
    double raw, mag = 1;

    max = status_page_clean(max);   /* an infinite max would never end the loops below */
    if (max < 4 * min_step)
        max = 4 * min_step;
    raw = max / 4;
    while (mag * 10 <= raw)
        mag *= 10;
    while (mag > raw)
        mag /= 10;
    raw /= mag;                     /* now in [1, 10) */
    sc.step = (raw <= 1 ? 1 : raw <= 2 ? 2 : raw <= 5 ? 5 : 10) * mag;
    /* At most 4 rounds (step >= max / 4); the tolerance keeps float error from adding a fifth. */
    for (sc.top = sc.step; sc.top < max * (1 - 1e-9);)
        sc.top += sc.step;
    return sc;
}

/* Value -> y, t -> x, clamped to the plot, in whole user units. */
static int chart_y(const struct chart_scale *sc, double val)
{
    double f = val / sc->top;

    f = f > 1 ? 1 : status_page_clean(f);
    return CHART_BOTTOM - (int)status_page_round(f * (CHART_BOTTOM - CHART_TOP));
}

static int chart_x(int64_t t, int64_t t0, int64_t t1)
{
    double f = t1 > t0 ? (double)(t - t0) / (double)(t1 - t0) : 0;

    f = f > 1 ? 1 : status_page_clean(f);
    return CHART_LEFT + (int)status_page_round(f * (CHART_RIGHT - CHART_LEFT));
}

static void chart_grid(struct evbuffer *out, const struct chart_scale *sc)
{
    char label[STATUS_PAGE_NUM];

    for (int i = 0; i * sc->step <= sc->top * 1.000001; i++) {
        int y = chart_y(sc, i * sc->step);
        evbuffer_add_printf(out, "<line class=\"grid\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>"
                                 "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n",
                            CHART_LEFT, y, CHART_RIGHT, y, CHART_LEFT - 5, y + 4,
                            status_page_human(label, sizeof(label), i * sc->step, false));
    }
}

/* The area under the series, then its line; consecutive points on the same unit are merged. */
static void chart_path(struct evbuffer *out, const struct status_point *pts, size_t n, enum status_series s,
                       const struct chart_scale *sc)
{
    struct evbuffer *line = evbuffer_new();
    int64_t t0 = pts[0].t_s, t1 = pts[n - 1].t_s;
    int px = -1, py = -1;

    if (!line)
        return;
    evbuffer_add_printf(out, "<path class=\"area\" d=\"M%d %d", chart_x(t0, t0, t1), CHART_BOTTOM);
    for (size_t i = 0; i < n; i++) {
        int x = chart_x(pts[i].t_s, t0, t1), y = chart_y(sc, status_page_value(&pts[i], s));
        if (x == px && y == py)
            continue;
        evbuffer_add_printf(out, "L%d %d", x, y);
        evbuffer_add_printf(line, "%s%d %d", px < 0 ? "M" : "L", x, y);
        px = x;
        py = y;
    }
    evbuffer_add_printf(out, "L%d %dZ\"/>\n<path class=\"line\" d=\"", px, CHART_BOTTOM);
    evbuffer_add_buffer(out, line);
    status_page_puts(out, "\"/>\n");
    evbuffer_free(line);
}

/* Labels under the plot: "24 h ago" ... "now" for the day, dates for the month. */
static void chart_times(struct evbuffer *out, const struct status_view *v, const struct status_point *pts,
                        size_t n, int dates)
{
    char a[STATUS_PAGE_NUM], b[STATUS_PAGE_NUM], ago[STATUS_PAGE_NUM];
    int64_t t0 = pts[0].t_s, t1 = pts[n - 1].t_s;

    if (dates) {
        status_page_date(a, sizeof(a), t0, 0);
        status_page_date(b, sizeof(b), t1, 0);
    } else {
        snprintf(a, sizeof(a), "%s ago", status_page_ago(ago, sizeof(ago), v->now_s - t0));
        if (v->now_s - t1 < 120)
            snprintf(b, sizeof(b), "now");
        else
            snprintf(b, sizeof(b), "%s ago", status_page_ago(ago, sizeof(ago), v->now_s - t1));
    }
    evbuffer_add_printf(out, "<text x=\"%d\" y=\"%d\">%s</text><text x=\"%d\" y=\"%d\" "
                             "text-anchor=\"end\">%s</text>\n",
                        CHART_LEFT, CHART_H - 6, a, CHART_RIGHT, CHART_H - 6, b);
}

/* The card title line: the series' name, its latest value and its highest. */
static void chart_head(struct evbuffer *out, const char *title, const struct status_point *pts, size_t n,
                       enum status_series s, double max)
{
    char last[STATUS_PAGE_NUM], top[STATUS_PAGE_NUM];

    evbuffer_add_printf(out, "<div class=\"chart-head\"><h3>%s</h3>", title);
    if (n > 0)
        evbuffer_add_printf(out, "<span class=\"sub\">%s latest \xc2\xb7 %s max</span>",
                            status_page_human(last, sizeof(last), status_page_value(&pts[n - 1], s), false),
                            status_page_human(top, sizeof(top), max, false));
    status_page_puts(out, "</div>\n");
}

/* One chart card: an SVG area chart of one series, or "no data yet" under two points. */
static void status_page_chart(struct evbuffer *out, const struct status_view *v, const char *title,
                              const struct status_point *pts, size_t n, enum status_series s, int dates)
{
    double max = 0;

    if (!pts)
        n = 0;
    for (size_t i = 0; i < n; i++)
        if (status_page_value(&pts[i], s) > max)
            max = status_page_value(&pts[i], s);
    status_page_puts(out, "<div class=\"card\">");
    chart_head(out, title, pts, n, s, max);
    if (n < 2) {
        status_page_puts(out, "<p class=\"empty\">no data yet</p></div>\n");
        return;
    }
    struct chart_scale sc = status_page_scale(max, s == SERIES_ANNOUNCES ? 0.01 : 1);
    evbuffer_add_printf(out, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">\n",
                        CHART_W, CHART_H, title);
    chart_grid(out, &sc);
    chart_path(out, pts, n, s, &sc);
    chart_times(out, v, pts, n, dates);
    status_page_puts(out, "</svg></div>\n");
}

/* Swarms, peers and announces/s over one period. */
static void status_page_charts(struct evbuffer *out, const struct status_view *v, const char *id,
                               const char *heading, const struct status_point *pts, size_t n, int dates)
{
    evbuffer_add_printf(out, "<h2 id=\"%s\">%s</h2>\n<section class=\"charts\">\n", id, heading);
    status_page_chart(out, v, "Swarms", pts, n, SERIES_SWARMS, dates);
    status_page_chart(out, v, "Peers", pts, n, SERIES_PEERS, dates);
    status_page_chart(out, v, "Announces/s", pts, n, SERIES_ANNOUNCES, dates);
    status_page_puts(out, "</section>\n");
}

/* ---- tables ---- */

/* An info_hash: shortened in the row, the whole of it one tap away (and in the title). */
static void status_page_hash(struct evbuffer *out, const char *hex)
{
    size_t n = strnlen(hex, 40);

    status_page_puts(out, "<details><summary title=\"");
    status_page_escape_n(out, hex, n);
    status_page_puts(out, "\"><code>");
    if (n > 14) {
        status_page_escape_n(out, hex, 8);
        status_page_puts(out, "\xe2\x80\xa6");
        status_page_escape_n(out, hex + n - 4, 4);
    } else {
        status_page_escape_n(out, hex, n);
    }
    status_page_puts(out, "</code></summary><code class=\"full\">");
    status_page_escape_n(out, hex, n);
    status_page_puts(out, "</code></details>");
}

static void status_page_badges(struct evbuffer *out, unsigned flags)
{
    for (int k = 0; k < ANOMALY_KINDS; k++)
        if (flags & (1u << k)) {
            status_page_puts(out, "<span class=\"badge\">");
            status_page_escape(out, anomaly_kind_name((enum anomaly_kind)k));
            status_page_puts(out, "</span>");
        }
}

/* A right-aligned number cell. */
static void status_page_td(struct evbuffer *out, uint64_t n)
{
    char b[STATUS_PAGE_NUM];

    evbuffer_add_printf(out, "<td class=\"n\">%s</td>", status_page_count(b, sizeof(b), n));
}

/* The section's heading (id: its #anchor) and the table's head. */
static void status_page_table_open(struct evbuffer *out, const char *id, const char *heading, const char *columns)
{
    evbuffer_add_printf(out, "<h2 id=\"%s\">%s</h2>\n<div class=\"scroll\"><table>\n"
                             "<thead><tr>%s</tr></thead>\n<tbody>\n", id, heading, columns);
}

static void status_page_table_close(struct evbuffer *out)
{
    status_page_puts(out, "</tbody></table></div>\n");
}

/* A whole-width row saying the table is empty. */
static void status_page_table_empty(struct evbuffer *out, int columns, const char *text)
{
    evbuffer_add_printf(out, "<tr><td colspan=\"%d\" class=\"wrap sub\">%s</td></tr>\n", columns, text);
}

static void status_page_table_busiest(const struct status_view *v, struct evbuffer *out)
{
    status_page_table_open(out, "busiest", "Busiest swarms",
                           "<th class=\"n\">#</th><th>Info hash</th><th class=\"n\">Seeders</th>"
                           "<th class=\"n\">Leechers</th><th class=\"n\">Downloaded</th>"
                           "<th class=\"n\">Announces</th><th>Flags</th>");
    if (!v->busiest || v->nbusiest == 0)
        status_page_table_empty(out, 7, "No swarm has been announced yet.");
    for (size_t i = 0; v->busiest && i < v->nbusiest; i++) {
        const struct status_swarm *sw = &v->busiest[i];
        evbuffer_add_printf(out, "<tr><td class=\"n\">%zu</td><td>", i + 1);
        status_page_hash(out, sw->hex);
        status_page_puts(out, "</td>");
        status_page_td(out, sw->seeders);
        status_page_td(out, sw->leechers);
        status_page_td(out, sw->downloaded);
        status_page_td(out, sw->announces);
        status_page_puts(out, "<td>");
        status_page_badges(out, sw->flags);
        status_page_puts(out, "</td></tr>\n");
    }
    status_page_table_close(out);
    status_page_puts(out, "<p class=\"sub\">Announces: in the last announce interval.</p>\n");
}

static void status_page_table_flagged(const struct status_view *v, struct evbuffer *out)
{
    status_page_table_open(out, "flagged", "Flagged swarms",
                           "<th>Info hash</th><th>Kinds and reason</th><th class=\"n\">Seeders</th>"
                           "<th class=\"n\">Leechers</th>");
    if (!v->flagged || v->nflagged == 0)
        status_page_table_empty(out, 4, "No swarm is flagged.");
    for (size_t i = 0; v->flagged && i < v->nflagged; i++) {
        const struct status_swarm *sw = &v->flagged[i];
        status_page_puts(out, "<tr><td>");
        status_page_hash(out, sw->hex);
        /* The reason beside its badges, not in a column of its own: on a phone it stays in view. */
        status_page_puts(out, "</td><td class=\"wrap\">");
        status_page_badges(out, sw->flags);
        status_page_puts(out, "<div class=\"reason\">");
        status_page_escape_n(out, sw->reason, strnlen(sw->reason, sizeof(sw->reason)));
        status_page_puts(out, "</div></td>");
        status_page_td(out, sw->seeders);
        status_page_td(out, sw->leechers);
        status_page_puts(out, "</tr>\n");
    }
    status_page_table_close(out);
}

/* Kind and definition share a cell (the definition wraps under the badge), so that a phone shows
 * both without scrolling sideways. */
static void status_page_table_anomalies(const struct status_view *v, struct evbuffer *out)
{
    status_page_table_open(out, "anomalies", "Anomalies by kind",
                           "<th>Kind</th><th class=\"n\">Swarms</th>");
    for (int k = 0; k < ANOMALY_KINDS; k++) {
        status_page_puts(out, v->anomalies[k] ? "<tr><td class=\"wrap\"><span class=\"badge\">"
                                              : "<tr><td class=\"wrap\"><span class=\"badge off\">");
        status_page_escape(out, anomaly_kind_name((enum anomaly_kind)k));
        status_page_puts(out, "</span><div class=\"reason sub\">");
        status_page_escape(out, anomaly_kind_text((enum anomaly_kind)k));
        status_page_puts(out, "</div></td>");
        status_page_td(out, v->anomalies[k]);
        status_page_puts(out, "</tr>\n");
    }
    status_page_table_close(out);
}

static void status_page_table_workers(const struct status_view *v, struct evbuffer *out)
{
    char b[STATUS_PAGE_NUM], c[STATUS_PAGE_NUM];

    status_page_puts(out, "<h2 id=\"workers\">Workers on ");
    status_page_escape(out, v->host && v->host[0] ? v->host : "this host");
    status_page_puts(out, "</h2>\n<div class=\"scroll\"><table>\n<thead><tr><th class=\"n\">Slot</th>"
                          "<th class=\"n\">PID</th><th>State</th><th class=\"n\">Generation</th>"
                          "<th class=\"n\">Requests</th><th class=\"n\">Connections</th>"
                          "<th class=\"n\">In flight</th></tr></thead>\n<tbody>\n");
    if (!v->workers || v->nworkers == 0)
        status_page_table_empty(out, 7, "No worker is running.");
    for (size_t i = 0; v->workers && i < v->nworkers; i++) {
        const struct status_worker *w = &v->workers[i];
        if (w->pid == 0) {
            evbuffer_add_printf(out, "<tr><td class=\"n\">%d</td><td class=\"n\">\xe2\x80\x94</td>"
                                     "<td><span class=\"badge off\">empty</span></td>"
                                     "<td colspan=\"4\"></td></tr>\n", w->slot);
            continue;
        }
        evbuffer_add_printf(out, "<tr><td class=\"n\">%d</td><td class=\"n\">%ld</td><td>%s</td>",
                            w->slot, (long)w->pid,
                            w->ready ? "<span class=\"badge ok\">ready</span>"
                                     : "<span class=\"badge warn\">starting</span>");
        status_page_td(out, w->generation);
        status_page_td(out, w->requests);
        evbuffer_add_printf(out, "<td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n",
                            status_page_signed(b, sizeof(b), w->open_connections),
                            status_page_signed(c, sizeof(c), w->inflight));
    }
    status_page_table_close(out);
}

/* ---- the page ---- */

void status_page_render(const struct status_view *v, struct evbuffer *out)
{
    status_page_head(v, out);
    status_page_header(v, out);
    if (v->have_snapshot) {
        status_page_cards(v, out);
        status_page_charts(out, v, "day", "Last 24 hours", v->day, v->nday, 0);
        status_page_charts(out, v, "month", "Last 30 days", v->month, v->nmonth, 1);
        status_page_table_busiest(v, out);
        status_page_table_flagged(v, out);
        status_page_table_anomalies(v, out);
    }
    status_page_table_workers(v, out);
    status_page_foot(v, out);
}
