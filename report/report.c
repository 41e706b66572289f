/* The study report as one HTML file (see report/report.h). Layout only: the
 * front comes from the database's Pareto query (`trials --pareto`), the rest
 * from the study, its trials and the sensitivity cache as stored. */
#include "report/report.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Plot geometry (SVG user units). */
#define PLOT_W 640
#define PLOT_H 360
#define PLOT_L 72 /* left margin: y tick labels */
#define PLOT_R 16
#define PLOT_T 16
#define PLOT_B 48 /* bottom margin: x tick labels and axis title */
#define PLOT_TICKS 5
/* A metric axis spanning more than this ratio (all values > 0) is drawn on a log scale. */
#define PLOT_LOG_RATIO 100.0

static void esc(FILE *fp, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '&': fputs("&amp;", fp); break;
        case '"': fputs("&quot;", fp); break;
        default: fputc(*s, fp);
        }
    }
}

static void num(FILE *fp, double v) {
    if (isfinite(v))
        fprintf(fp, "%.4g", v);
    else
        fputs("-", fp);
}

typedef struct {
    double x, y;
    int64_t trial;
    const char *cls;
} pt_t;

typedef struct {
    double x0, x1, y0, y1;
    int logy;
} axes_t;

static double ty(const axes_t *a, double y) {
    double v = a->logy ? log10(y) : y, v0 = a->logy ? log10(a->y0) : a->y0,
           v1 = a->logy ? log10(a->y1) : a->y1;
    double f = v1 > v0 ? (v - v0) / (v1 - v0) : 0.5;
    return PLOT_T + (1 - f) * (PLOT_H - PLOT_T - PLOT_B);
}

static double tx(const axes_t *a, double x) {
    double f = a->x1 > a->x0 ? (x - a->x0) / (a->x1 - a->x0) : 0.5;
    return PLOT_L + f * (PLOT_W - PLOT_L - PLOT_R);
}

static void axes_fit(const pt_t *p, int n, axes_t *a) {
    a->x0 = a->y0 = INFINITY;
    a->x1 = a->y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(p[i].x) || !isfinite(p[i].y)) continue;
        a->x0 = fmin(a->x0, p[i].x), a->x1 = fmax(a->x1, p[i].x);
        a->y0 = fmin(a->y0, p[i].y), a->y1 = fmax(a->y1, p[i].y);
    }
    if (!isfinite(a->x0)) a->x0 = 0, a->x1 = 1, a->y0 = 0, a->y1 = 1;
    a->logy = a->y0 > 0 && a->y1 / a->y0 > PLOT_LOG_RATIO;
    double dx = a->x1 - a->x0, dy = a->y1 - a->y0;
    a->x0 -= dx ? 0.05 * dx : 0.5, a->x1 += dx ? 0.05 * dx : 0.5;
    if (a->logy)
        a->y0 /= 1.5, a->y1 *= 1.5;
    else
        a->y0 -= dy ? 0.05 * dy : 0.5, a->y1 += dy ? 0.05 * dy : 0.5;
}

static void axes_draw(FILE *fp, const axes_t *a, const char *xlabel, const char *ylabel) {
    int x0 = PLOT_L, x1 = PLOT_W - PLOT_R, y0 = PLOT_T, y1 = PLOT_H - PLOT_B;
    fprintf(fp, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", x0, y0, x1 - x0,
            y1 - y0);
    for (int i = 0; i <= PLOT_TICKS; i++) {
        double f = (double)i / PLOT_TICKS;
        double xv = a->x0 + f * (a->x1 - a->x0);
        double yv =
            a->logy ? pow(10, log10(a->y0) + f * (log10(a->y1) - log10(a->y0))) : a->y0 + f * (a->y1 - a->y0);
        fprintf(fp, "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%.4g</text>\n",
                tx(a, xv), y1 + 16, xv);
        fprintf(fp, "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%.3g</text>\n", x0 - 6,
                ty(a, yv) + 4, yv);
        fprintf(fp, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", x0, x1, ty(a, yv),
                ty(a, yv));
    }
    fprintf(fp, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">", (x0 + x1) / 2, PLOT_H - 8);
    esc(fp, xlabel);
    fprintf(fp,
            "</text>\n<text x=\"14\" y=\"%d\" class=\"axis\" text-anchor=\"middle\" transform=\"rotate(-90 "
            "14 %d)\">",
            (y0 + y1) / 2, (y0 + y1) / 2);
    esc(fp, ylabel);
    fputs(a->logy ? " (log)</text>\n" : "</text>\n", fp);
}

/* One marker: a circle, or a square (uniform) / diamond (ilp) for the baselines. */
static void marker(FILE *fp, const axes_t *a, const pt_t *p, const char *xl, const char *yl) {
    double x = tx(a, p->x), y = ty(a, p->y);
    if (!strcmp(p->cls, "baseline-uniform"))
        fprintf(fp,
                "<rect class=\"%s\" data-trial=\"%lld\" x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\">",
                p->cls, (long long)p->trial, x - 5, y - 5);
    else if (!strcmp(p->cls, "baseline-ilp"))
        fprintf(fp, "<path class=\"%s\" data-trial=\"%lld\" d=\"M%.1f %.1fl6 6l-6 6l-6 -6z\">", p->cls,
                (long long)p->trial, x, y - 6);
    else
        fprintf(fp, "<circle class=\"%s\" data-trial=\"%lld\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\">", p->cls,
                (long long)p->trial, x, y, !strcmp(p->cls, "front-point") ? 5 : 3);
    fprintf(fp, "<title>trial %lld: %s %.6g, %s %.6g</title>", (long long)p->trial, xl, p->x, yl, p->y);
    fputs(!strcmp(p->cls, "baseline-uniform") ? "</rect>\n"
          : !strcmp(p->cls, "baseline-ilp")   ? "</path>\n"
                                              : "</circle>\n",
          fp);
}

static int finite_pt(const pt_t *p) {
    return isfinite(p->x) && isfinite(p->y);
}

/* ---- sections ---- */

static void head(FILE *fp, const ba_study_info_t *info) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>bitalloc report: ", fp);
    esc(fp, info->name);
    fputs(
        "</title>\n<style>\n"
        "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}\n"
        "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\n"
        "table{border-collapse:collapse;font-size:0.9em}td,th{border-bottom:1px solid #ddd;padding:3px "
        "8px;text-align:left}\n"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
        ".bar{display:inline-block;height:10px;background:#4a7fb5;vertical-align:middle}\n"
        ".sbar{display:inline-block;height:10px;background:#c0504d;vertical-align:middle}\n"
        "svg{background:#fff;border:1px solid #ccc}\n"
        ".frame{fill:none;stroke:#888}.grid{stroke:#eee}.tick{font-size:11px;fill:#555}.axis{font-size:12px;"
        "fill:#222}\n"
        ".trial{fill:#bbb}.front-point{fill:#d62728}.front-line{fill:none;stroke:#d62728;stroke-width:1.5}\n"
        ".baseline-uniform{fill:#2ca02c}.baseline-ilp{fill:#1f77b4}.chosen{fill:none;stroke:#000;stroke-"
        "width:2}\n"
        ".best-line{fill:none;stroke:#1f77b4;stroke-width:1.5}\n"
        ".legend{font-size:0.85em;color:#444}\n"
        "</style></head><body>\n<h1>Study ",
        fp);
    esc(fp, info->name);
    fputs("</h1>\n<p>model <code>", fp);
    esc(fp, info->model_path);
    fprintf(fp, "</code> &middot; created %s &middot; %s &middot; %lld trials, %lld complete</p>\n",
            info->created, info->state, (long long)info->ntrials, (long long)info->ncomplete);
}

static ba_status front_section(FILE *fp, ba_db_t *db, const ba_study_info_t *info, const char *objectives,
                               const ba_trial_t *all, int nall, int64_t chosen, ba_error *err) {
    char ycol[32], xcol[32];
    size_t n0 = strcspn(objectives, ",");
    snprintf(ycol, sizeof ycol, "%.*s", (int)(n0 < 31 ? n0 : 31), objectives);
    const char *rest = objectives + n0 + (objectives[n0] ? 1 : 0);
    size_t n1 = strcspn(rest, ",");
    snprintf(xcol, sizeof xcol, "%.*s", (int)(n1 < 31 ? n1 : 31), rest);
    ba_trial_query_t q = {.pareto = objectives};
    ba_trial_t *f = NULL;
    int nf = 0;
    BA_TRY(ba_db_trials_query(db, info->id, &q, &f, &nf, err));
    pt_t *pts = ba_calloc((size_t)nall + (size_t)nf + 1, sizeof *pts, err);
    if (!pts) {
        ba_db_trials_free(f, nf);
        return BA_ERR_NOMEM;
    }
    int np = 0;
    for (int i = 0; i < nall; i++) {
        if (strcmp(all[i].state, "complete") != 0) continue;
        const char *cls = !strcmp(all[i].method, "uniform") ? "baseline-uniform"
                          : !strcmp(all[i].method, "ilp")   ? "baseline-ilp"
                                                            : "trial";
        pts[np++] = (pt_t){ba_db_trial_column(&all[i], xcol, NULL), ba_db_trial_column(&all[i], ycol, NULL),
                           all[i].number, cls};
    }
    int nbase = np;
    for (int i = 0; i < nf; i++)
        pts[np++] = (pt_t){ba_db_trial_column(&f[i], xcol, NULL), ba_db_trial_column(&f[i], ycol, NULL),
                           f[i].number, "front-point"};
    axes_t a;
    axes_fit(pts, np, &a);
    fprintf(
        fp,
        "<h2>Measured Pareto front</h2>\n<p class=\"legend\">%d of %d complete trials are on the front of ",
        nf, nbase);
    esc(fp, ycol);
    fputs(" against ", fp);
    esc(fp, xcol);
    fputs(" (<code>bitalloc trials --pareto --objectives ", fp);
    esc(fp, objectives);
    fputs("</code>). Red: front; green squares: uniform; blue diamonds: ILP; grey: other trials; ringed: the "
          "trial "
          "shown below.</p>\n",
          fp);
    fprintf(fp,
            "<svg id=\"front\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 "
            "%d %d\">\n",
            PLOT_W, PLOT_H, PLOT_W, PLOT_H);
    axes_draw(fp, &a, xcol, ycol);
    /* The front as a line in x order (the query sorts it by the last objective). */
    if (nf > 1) {
        fputs("<polyline class=\"front-line\" points=\"", fp);
        for (int i = nbase; i < np; i++)
            if (finite_pt(&pts[i]) && (!a.logy || pts[i].y > 0))
                fprintf(fp, "%.1f,%.1f ", tx(&a, pts[i].x), ty(&a, pts[i].y));
        fputs("\"/>\n", fp);
    }
    /* Other trials, then the front, then the baselines on top (an ILP point is often on the front too). */
    for (int pass = 0; pass < 3; pass++)
        for (int i = 0; i < np; i++) {
            int base = i < nbase && strcmp(pts[i].cls, "trial") != 0;
            if ((pass == 0 && (i >= nbase || base)) || (pass == 1 && i < nbase) || (pass == 2 && !base))
                continue;
            if (finite_pt(&pts[i]) && (!a.logy || pts[i].y > 0)) marker(fp, &a, &pts[i], xcol, ycol);
        }
    for (int i = 0; i < nbase; i++)
        if (pts[i].trial == chosen && finite_pt(&pts[i]) && (!a.logy || pts[i].y > 0))
            fprintf(fp, "<circle class=\"chosen\" cx=\"%.1f\" cy=\"%.1f\" r=\"9\"/>\n", tx(&a, pts[i].x),
                    ty(&a, pts[i].y));
    fputs(
        "</svg>\n<table id=\"front-table\"><tr><th>trial</th><th>method</th><th>avg_bits</th><th>memory</th>"
        "<th>bops</th><th>latency</th><th>kl</th><th>mse</th><th>agreement</th><th>accuracy</th></tr>\n",
        fp);
    for (int i = 0; i < nf; i++) {
        fprintf(fp, "<tr class=\"front-row\"><td class=\"n\">%lld</td><td>", (long long)f[i].number);
        esc(fp, f[i].method);
        fputs("</td>", fp);
        double v[] = {f[i].avg_bits, f[i].memory, f[i].bops,      f[i].latency,
                      f[i].kl,       f[i].mse,    f[i].agreement, f[i].accuracy};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
            fputs("<td class=\"n\">", fp);
            num(fp, v[k]);
            fputs("</td>", fp);
        }
        fputs("</tr>\n", fp);
    }
    fputs("</table>\n", fp);
    free(pts);
    ba_db_trials_free(f, nf);
    return BA_OK;
}

/* Score of each layer from a cached sensitivity payload (NaN when absent). */
static void sens_scores(const char *payload, const ba_db_layer_t *l, int nl, double *score) {
    for (int i = 0; i < nl; i++) score[i] = NAN;
    json_t *j = payload ? json_loads(payload, 0, NULL) : NULL;
    json_t *layers = json_object_get(j, "layers");
    size_t k;
    json_t *o;
    json_array_foreach(layers, k, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        json_t *sc = json_object_get(o, "score");
        for (int i = 0; name && json_is_number(sc) && i < nl; i++)
            if (!strcmp(l[i].name, name)) score[i] = json_number_value(sc);
    }
    json_decref(j);
}

static ba_status layers_section(FILE *fp, ba_db_t *db, const ba_study_info_t *info, const char *sens_method,
                                const ba_trial_t *t, ba_error *err) {
    ba_db_layer_t *l = NULL;
    int nl = 0;
    BA_TRY(ba_db_layers_get(db, info->id, &l, &nl, err));
    char *payload = NULL;
    ba_status st = sens_method && sens_method[0]
                       ? ba_db_sens_latest(db, info->model_sha256, sens_method, &payload, err)
                       : BA_OK;
    double *score = st == BA_OK ? ba_calloc((size_t)nl + 1, sizeof *score, err) : NULL;
    if (st == BA_OK && !score) st = BA_ERR_NOMEM;
    if (st == BA_OK) {
        sens_scores(payload, l, nl, score);
        double smax = 0;
        int bmax = 1;
        for (int i = 0; i < nl; i++) {
            if (isfinite(score[i])) smax = fmax(smax, score[i]);
            if (i < t->nlayers) bmax = t->w_bits[i] > bmax ? t->w_bits[i] : bmax;
        }
        fprintf(fp,
                "<h2>Per-layer bits of trial %lld</h2>\n<p class=\"legend\">Bits as in <code>bitalloc export "
                "--trial %lld</code>; sensitivity ",
                (long long)t->number, (long long)t->number);
        if (payload) {
            fputs("score of the cached <code>", fp);
            esc(fp, sens_method);
            fputs("</code> estimate (as <code>bitalloc sensitivity</code> prints it).</p>\n", fp);
        } else
            fputs("not in the database's cache (a method that needs none, or an imported file).</p>\n", fp);
        fputs("<table "
              "id=\"layers\"><tr><th>#</th><th>layer</th><th>op</th><th>params</th><th>bits</th><th></th>"
              "<th>sensitivity</th><th></th></tr>\n",
              fp);
        for (int i = 0; i < nl; i++) {
            int b = i < t->nlayers ? t->w_bits[i] : 0;
            fprintf(fp, "<tr class=\"layer\"><td class=\"n\">%d</td><td>", i);
            esc(fp, l[i].name);
            fputs("</td><td>", fp);
            esc(fp, l[i].op);
            fprintf(fp,
                    "</td><td class=\"n\">%lld</td><td class=\"n\">%d</td><td><span class=\"bar\" "
                    "style=\"width:%dpx\">"
                    "</span></td><td class=\"n\">",
                    (long long)l[i].params, b, 12 * b * 8 / bmax);
            num(fp, score[i]);
            fprintf(fp, "</td><td><span class=\"sbar\" style=\"width:%dpx\"></span></td></tr>\n",
                    isfinite(score[i]) && smax > 0 ? (int)lround(120 * score[i] / smax) : 0);
        }
        fputs("</table>\n", fp);
    }
    free(score);
    free(payload);
    ba_db_layers_free(l, nl);
    return st;
}

static void progress_section(FILE *fp, const char *ycol, const ba_trial_t *all, int nall) {
    pt_t *pts = malloc(sizeof *pts * ((size_t)nall + 1));
    if (!pts) return;
    int n = 0, maximize = 0;
    for (int i = 0; i < nall; i++)
        if (!strcmp(all[i].state, "complete"))
            pts[n++] = (pt_t){(double)all[i].number, ba_db_trial_column(&all[i], ycol, &maximize),
                              all[i].number, "trial"};
    axes_t a;
    axes_fit(pts, n, &a);
    fprintf(fp,
            "<h2>Search progress</h2>\n<p class=\"legend\">Each complete trial's %s by trial number, and the "
            "best "
            "so far (blue). Pruned trials were measured on fewer samples and are left out.</p>\n",
            ycol);
    fprintf(fp,
            "<svg id=\"progress\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\">\n",
            PLOT_W, PLOT_H, PLOT_W, PLOT_H);
    axes_draw(fp, &a, "trial", ycol);
    fputs("<polyline class=\"best-line\" points=\"", fp);
    double best = NAN;
    for (int i = 0; i < n; i++) {
        if (!isfinite(pts[i].y) || (a.logy && pts[i].y <= 0)) continue;
        if (!isfinite(best) || (maximize ? pts[i].y > best : pts[i].y < best)) best = pts[i].y;
        fprintf(fp, "%.1f,%.1f ", tx(&a, pts[i].x), ty(&a, best));
    }
    fputs("\"/>\n", fp);
    for (int i = 0; i < n; i++)
        if (finite_pt(&pts[i]) && (!a.logy || pts[i].y > 0)) marker(fp, &a, &pts[i], "trial", ycol);
    fputs("</svg>\n", fp);
    free(pts);
}

static void totals_section(FILE *fp, const ba_trial_t *t) {
    fprintf(fp, "<h2>Totals of trial %lld</h2>\n<table id=\"totals\">\n", (long long)t->number);
    static const char *const cols[] = {"avg_bits", "memory", "bops",      "latency", "predicted",
                                       "kl",       "mse",    "agreement", "accuracy"};
    fputs("<tr><th>method</th><td>", fp);
    esc(fp, t->method);
    fputs("</td></tr>\n", fp);
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        fprintf(fp, "<tr><th>%s</th><td class=\"n\">", cols[i]);
        num(fp, ba_db_trial_column(t, cols[i], NULL));
        fputs("</td></tr>\n", fp);
    }
    fprintf(fp, "<tr><th>samples</th><td class=\"n\">%lld</td></tr>\n</table>\n", (long long)t->samples);
}

static void settings_section(FILE *fp, json_t *settings) {
    fputs("<h2>Settings</h2>\n<table id=\"settings\">\n", fp);
    const char *k;
    json_t *v;
    json_object_foreach(settings, k, v) {
        if (json_is_null(v)) continue;
        char *txt = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs("<tr><th>", fp);
        esc(fp, k);
        fputs("</th><td><code>", fp);
        esc(fp, json_is_string(v) ? json_string_value(v) : txt ? txt : "");
        fputs("</code></td></tr>\n", fp);
        free(txt);
    }
    fputs("</table>\n", fp);
}

ba_status ba_report_write(ba_db_t *db, const ba_report_opts_t *o, FILE *fp, ba_error *err) {
    const char *objectives = o->objectives ? o->objectives : BA_DB_PARETO_DEFAULT;
    BA_TRY(ba_db_pareto_check(objectives, NULL, err));
    ba_study_info_t info = {0};
    BA_TRY(ba_db_study_get(db, o->study, &info, err));
    ba_trial_t *all = NULL, *best = NULL, chosen = {0};
    int nall = 0, nbest = 0;
    ba_trial_query_t qa = {0}, qb = {.best = 1};
    ba_status st = ba_db_trials_query(db, info.id, &qa, &all, &nall, err);
    if (st == BA_OK && o->trial > 0)
        st = ba_db_trial_get(db, info.id, o->trial, &chosen, err);
    else if (st == BA_OK) {
        st = ba_db_trials_query(db, info.id, &qb, &best, &nbest, err);
        if (st == BA_OK && nbest == 0)
            st = ba_error_set(err, BA_ERR_INPUT, "--study %s: no complete trial to report", info.name);
    }
    const ba_trial_t *t = o->trial > 0 ? &chosen : best;
    json_t *settings = json_loads(info.settings ? info.settings : "{}", 0, NULL);
    const char *sens = json_string_value(json_object_get(settings, "sensitivity"));
    char ycol[32];
    size_t n0 = strcspn(objectives, ",");
    snprintf(ycol, sizeof ycol, "%.*s", (int)(n0 < 31 ? n0 : 31), objectives);
    if (st == BA_OK) {
        head(fp, &info);
        st = front_section(fp, db, &info, objectives, all, nall, t->number, err);
    }
    if (st == BA_OK) st = layers_section(fp, db, &info, sens, t, err);
    if (st == BA_OK) {
        progress_section(fp, ycol, all, nall);
        totals_section(fp, t);
        settings_section(fp, settings);
        fputs("<p class=\"legend\">Written by <code>bitalloc report</code>.</p>\n</body></html>\n", fp);
    }
    json_decref(settings);
    ba_trial_free(&chosen);
    ba_db_trials_free(best, nbest);
    ba_db_trials_free(all, nall);
    ba_db_study_info_free(&info);
    return st;
}
