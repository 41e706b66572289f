/* Orchestration of a search study (see study.h): loads the model and data,
 * gets the cost table (sensitivity cache first), builds the problem, solves
 * the ILP, then runs the method with the DB as the trial store. A resumed
 * study takes the same path; what it finds stored (sensitivity, trials,
 * checkpoint) it reads instead of recomputing. */
#include "study/study.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/pareto.h"
#include "core/util.h"
#include "eval/dataset.h"
#include "eval/evaluate.h"
#include "eval/external.h"
#include "model/model.h"
#include "quant/apply.h"
#include "quant/cost.h"
#include "quant/wcache.h"
#include "search/hw.h"
#include "search/nsga2.h"

/* ---- the run ---- */

typedef struct run_ctx {
    ba_db_t *db;
    int64_t sid;
    const ba_study_settings_t *s;
    const ba_study_callbacks_t *cb;
    ba_model_t *m;
    ba_dataset_t *ds;
    int64_t *labels;
    int64_t nlabels;
    ba_problem_t *p;
    ba_problem_t *p_extra; /* --extra-seed: p with the measured table's Ω (NULL: none) */
    int has_sens;
    ba_evaluator_t *ev;
    ba_wcache_t *wc;
    ba_eval_reuse_t *reuse; /* values shared by configurations with the same first layers */
    ba_act_range_t *ranges;
    unsigned char *act_mark; /* values the activation hook changes */
    ba_quant_acts_t acts;
    ba_eval_hook_t act_hook; /* fake-quant of the activations (acts), when --act-bits */
    int is_class;
    int64_t N;
    ba_tensor_t **overrides; /* [nvalues] */
    int *wbits, *abits;      /* [nlayers] */
    int latency_j;           /* index of the latency budget in p, -1 */
    ba_metric_t metric;      /* resolved objective */
    int64_t Nsearch, Nvalid; /* evo: samples 0..Nsearch-1 ranked on, the next Nvalid the validation part */
    int64_t measured;        /* measurements made by this process (memo misses) */
    char *config;            /* memo key buffer: the configuration as text */
    ba_extev_t *ext;         /* --evaluator child, or NULL */
    int64_t ext_id;          /* evaluations sent to it */
    int zero_costs;          /* validation only: no sensitivity, Ω = 0 */
    const ba_study_work_t *work; /* one of many workers (NULL: alone) */
    char worker[160];            /* its name in the work queue */
    struct heartbeat *hb;        /* renews the lease of the claim being measured */
} run_ctx_t;

static void choice_bits(const ba_problem_t *p, const int *choice, int *bits) {
    for (int l = 0; l < p->nlayers; l++) bits[l] = p->bits[p->start[l] + choice[l]];
}

/* The memo key of a configuration: its weight widths, comma-separated (the
 * activation width is the study's, the same for every trial). */
static void config_text(const run_ctx_t *c, char *out) {
    size_t o = 0;
    for (int l = 0; l < c->p->nlayers; l++) o += (size_t)sprintf(out + o, l ? ",%d" : "%d", c->wbits[l]);
    out[o] = '\0';
}

/* Measures the configuration in c->wbits on samples [first, first + n) (no memo). */
static ba_status measure(run_ctx_t *c, int64_t first, int64_t n, ba_eval_result_t *out, ba_error *err) {
    if (c->ext) {
        /* The user's evaluator scores the fake-quant model file of this configuration. */
        double score, acc;
        BA_TRY(ba_quant_write_onnx(c->m, c->wbits, &c->s->quant, NULL, 0, ba_extev_model_path(c->ext), err));
        BA_TRY(ba_extev_score(c->ext, ++c->ext_id, first, n, c->N, &score, &acc, err));
        c->measured++;
        *out = (ba_eval_result_t){ba_metric_objective(c->metric, score), NAN, NAN, NAN, acc, n};
        if (!isfinite(out->objective)) out->objective = out->accuracy = NAN;
        return BA_OK;
    }
    memset(c->overrides, 0, (size_t)c->m->nvalues * sizeof *c->overrides);
    BA_TRY(ba_wcache_overrides(c->wc, c->wbits, c->overrides, err));
    ba_metrics_t met;
    BA_TRY(ba_evaluator_run_reuse(c->ev, c->reuse, c->wbits, c->overrides,
                                  ba_quant_acts_on(&c->acts) ? &c->act_hook : NULL, first, n, &met, NULL,
                                  err));
    c->measured++;
    out->kl = met.kl;
    out->mse = met.mse;
    out->agreement = met.agreement;
    out->accuracy = met.accuracy_q;
    out->samples = n;
    out->objective = ba_metric_objective(c->metric, ba_metric_value(c->metric, &met));
    /* A non-finite output or metric fails the trial (SPEC §8): objective NaN, which
     * store_trial records as "failed" and no search ranks or returns as its best. */
    if (met.nonfinite_q || !isfinite(out->objective))
        out->objective = out->kl = out->mse = out->agreement = out->accuracy = NAN;
    return BA_OK;
}

/* Scores choice on samples [first, first + n): from the study's memo when it
 * was measured before (in an earlier generation or an earlier process), else
 * measured and memoised. */
static ba_status hook_eval_at(void *ctx, const int *choice, int64_t first, int64_t n, ba_eval_result_t *out,
                              ba_error *err) {
    run_ctx_t *c = ctx;
    choice_bits(c->p, choice, c->wbits);
    if (c->db && c->config) {
        config_text(c, c->config);
        ba_memo_entry_t e;
        int found = 0;
        BA_TRY(ba_db_memo_get(c->db, c->sid, c->config, first, n, &e, &found, err));
        if (found) {
            *out = (ba_eval_result_t){e.objective, e.kl, e.mse, e.agreement, e.accuracy, n};
            return BA_OK;
        }
    }
    BA_TRY(measure(c, first, n, out, err));
    if (c->db && c->config) {
        ba_memo_entry_t e = {out->objective, out->kl, out->mse, out->agreement, out->accuracy};
        BA_TRY(ba_db_memo_put(c->db, c->sid, c->config, first, n, &e, err));
    }
    return BA_OK;
}

/* ---- many workers: the work queue (study.h) ---- */

/* The heartbeat: a thread with its own connection that renews the lease of the
 * claim being measured every lease/3 seconds. A lease it finds lost (taken over
 * after a stall) needs nothing: the measurement is deterministic, so the two
 * completions store the same result. */
typedef struct heartbeat {
    pthread_t th;
    pthread_mutex_t mu;
    ba_db_t *db; /* the thread's connection */
    int64_t sid;
    double lease_s;
    int stop, active;
    ba_db_work_item_t item; /* the claim; item.config is the heartbeat's own copy */
} heartbeat_t;

static void *heartbeat_main(void *arg) {
    heartbeat_t *hb = arg;
    double every = hb->lease_s / 3, last = ba_now();
    for (;;) {
        usleep(20000);
        pthread_mutex_lock(&hb->mu);
        int stop = hb->stop, due = hb->active && ba_now() - last >= every;
        ba_db_work_item_t w = hb->item;
        w.config = due ? strdup(hb->item.config) : NULL;
        pthread_mutex_unlock(&hb->mu);
        if (stop) {
            free(w.config);
            break;
        }
        if (!due || !w.config) continue;
        last = ba_now();
        int held;
        ba_error e;
        ba_db_work_renew(hb->db, hb->sid, &w, hb->lease_s, &held, &e);
        free(w.config);
    }
    return NULL;
}

static void heartbeat_stop(heartbeat_t *hb) {
    if (!hb) return;
    pthread_mutex_lock(&hb->mu);
    hb->stop = 1;
    pthread_mutex_unlock(&hb->mu);
    pthread_join(hb->th, NULL);
    pthread_mutex_destroy(&hb->mu);
    ba_db_close(hb->db);
    free(hb->item.config);
    free(hb);
}

static ba_status heartbeat_start(run_ctx_t *c, ba_error *err) {
    heartbeat_t *hb = ba_calloc(1, sizeof *hb, err);
    if (!hb) return BA_ERR_NOMEM;
    hb->sid = c->sid;
    hb->lease_s = c->work->lease_s > 0 ? c->work->lease_s : BA_STUDY_WORK_LEASE_S;
    ba_status st = ba_db_reopen(c->db, &hb->db, err);
    if (st == BA_OK) st = ba_db_set_client_name(hb->db, c->worker, err);
    if (st != BA_OK) {
        ba_db_close(hb->db);
        free(hb);
        return st;
    }
    pthread_mutex_init(&hb->mu, NULL);
    if (pthread_create(&hb->th, NULL, heartbeat_main, hb) != 0) {
        pthread_mutex_destroy(&hb->mu);
        ba_db_close(hb->db);
        free(hb);
        return ba_error_set(err, BA_ERR_RUNTIME, "worker: cannot start the heartbeat thread");
    }
    c->hb = hb;
    return BA_OK;
}

/* Starts (w) or stops (NULL) renewing a claim's lease. */
static ba_status heartbeat_set(heartbeat_t *hb, const ba_db_work_item_t *w, ba_error *err) {
    char *copy = w ? ba_strdup(w->config, err) : NULL;
    if (w && !copy) return BA_ERR_NOMEM;
    pthread_mutex_lock(&hb->mu);
    free(hb->item.config);
    hb->item = w ? *w : (ba_db_work_item_t){0};
    hb->item.config = copy;
    hb->active = w != NULL;
    pthread_mutex_unlock(&hb->mu);
    return BA_OK;
}

/* The configuration text of a claim ("4,8,2") back into c->wbits; -1 when it does not fit the model. */
static int parse_config(run_ctx_t *c, const char *text) {
    const char *p = text;
    for (int l = 0; l < c->p->nlayers; l++) {
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || (l + 1 < c->p->nlayers ? *end != ',' : *end != '\0')) return -1;
        if (ba_problem_find(c->p, l, (int)b) < 0) return -1;
        c->wbits[l] = (int)b;
        p = end + 1;
    }
    return 0;
}

/* Claims and measures one queued measurement; *found = 0 when none was open. */
static ba_status work_one(run_ctx_t *c, int *found, ba_error *err) {
    double lease = c->work->lease_s > 0 ? c->work->lease_s : BA_STUDY_WORK_LEASE_S;
    int maxa = c->work->max_attempts > 0 ? c->work->max_attempts : BA_STUDY_WORK_MAX_ATTEMPTS;
    ba_db_work_item_t w;
    BA_TRY(ba_db_work_claim(c->db, c->sid, c->worker, lease, maxa, &w, found, err));
    if (!*found) return BA_OK;
    ba_status st = BA_OK;
    if (parse_config(c, w.config) != 0)
        st = ba_error_set(err, BA_ERR_INPUT,
                          "worker: queued configuration '%s' does not fit the study's model", w.config);
    ba_eval_result_t r;
    if (st == BA_OK) {
        st = heartbeat_set(c->hb, &w, err);
        if (st == BA_OK) st = measure(c, w.first, w.samples, &r, err);
        heartbeat_set(c->hb, NULL, NULL);
    }
    if (st == BA_OK) {
        ba_memo_entry_t e = {r.objective, r.kl, r.mse, r.agreement, r.accuracy};
        st = ba_db_work_done(c->db, c->sid, &w, &e, err);
    }
    ba_db_work_item_free(&w);
    return st;
}

/* The search's prepare hook: queues the batch, then claims and measures until every
 * member of it is in the memo (measured here or by another worker). */
static ba_status hook_prepare(void *ctx, const int *choices, const int64_t *first, const int64_t *nsamples,
                              int n, ba_error *err) {
    run_ctx_t *c = ctx;
    if (!c->work || !c->db || !c->config) return BA_OK;
    int L = c->p->nlayers;
    char **cfg = ba_calloc((size_t)n + 1, sizeof *cfg, err);
    int64_t *fi = ba_malloc(((size_t)n + 1) * sizeof *fi, err),
            *ns = ba_malloc(((size_t)n + 1) * sizeof *ns, err);
    ba_status st = cfg && fi && ns ? BA_OK : BA_ERR_NOMEM;
    int m = 0;
    for (int i = 0; st == BA_OK && i < n; i++) {
        choice_bits(c->p, choices + (size_t)i * L, c->wbits);
        config_text(c, c->config);
        ba_memo_entry_t e;
        int found = 0;
        st = ba_db_memo_get(c->db, c->sid, c->config, first[i], nsamples[i], &e, &found, err);
        if (st != BA_OK || found) continue;
        if (!(cfg[m] = ba_strdup(c->config, err))) st = BA_ERR_NOMEM;
        fi[m] = first[i], ns[m++] = nsamples[i];
    }
    if (st == BA_OK && m) st = ba_db_work_add(c->db, c->sid, (const char *const *)cfg, fi, ns, m, err);
    int maxa = c->work->max_attempts > 0 ? c->work->max_attempts : BA_STUDY_WORK_MAX_ATTEMPTS;
    double nap = 0.01;
    while (st == BA_OK && m > 0) {
        int found = 0;
        st = work_one(c, &found, err);
        if (st != BA_OK || found) {
            nap = 0.01;
            continue;
        }
        /* Nothing to claim: the rest of the batch is being measured elsewhere. Drop the measured ones. */
        int k = 0;
        for (int i = 0; i < m; i++) {
            int keep = 1;
            if (st == BA_OK) {
                ba_memo_entry_t e;
                int done = 0;
                st = ba_db_memo_get(c->db, c->sid, cfg[i], fi[i], ns[i], &e, &done, err);
                keep = !done;
            }
            if (st == BA_OK && keep) {
                char state[16];
                int64_t attempts = 0;
                int queued = 0, expired = 0;
                st = ba_db_work_get(c->db, c->sid, cfg[i], fi[i], ns[i], state, &attempts, &expired, &queued,
                                    err);
                if (st == BA_OK && attempts >= maxa && expired)
                    st = ba_error_set(
                        err, BA_ERR_RUNTIME,
                        "worker: the measurement of configuration %s on samples [%lld, %lld) was "
                        "claimed %lld times and never finished (its workers died): giving up",
                        cfg[i], (long long)fi[i], (long long)(fi[i] + ns[i]), (long long)attempts);
            }
            if (keep)
                cfg[k] = cfg[i], fi[k] = fi[i], ns[k++] = ns[i];
            else
                free(cfg[i]);
        }
        m = k;
        if (st == BA_OK && m > 0) {
            usleep((useconds_t)(nap * 1e6));
            if (nap < 0.2) nap *= 1.5;
        }
    }
    for (int i = 0; cfg && i < m; i++) free(cfg[i]);
    free(cfg);
    free(fi);
    free(ns);
    return st;
}

/* The searches' evaluation: the first nsamples (0 = the whole search part). */
static ba_status hook_eval(void *ctx, const int *choice, int64_t nsamples, ba_eval_result_t *out,
                           ba_error *err) {
    run_ctx_t *c = ctx;
    return hook_eval_at(ctx, choice, 0, nsamples > 0 ? nsamples : c->Nsearch, out, err);
}

static ba_status hook_validated(void *ctx, int64_t trial, const ba_eval_result_t *res, ba_error *err) {
    run_ctx_t *c = ctx;
    return ba_db_trial_set_validation(c->db, c->sid, trial, res->objective, err);
}

static ba_status hook_chosen(void *ctx, int64_t trial, const char *record, ba_error *err) {
    run_ctx_t *c = ctx;
    return ba_db_trial_set_chosen(c->db, c->sid, trial, record, err);
}

static int same_bits(const ba_trial_t *t, const int *bits, int n) {
    if (t->nlayers != n) return 0;
    for (int l = 0; l < n; l++)
        if (t->w_bits[l] != bits[l]) return 0;
    return 1;
}

static ba_status store_trial(run_ctx_t *c, int64_t number, const char *state, const char *method,
                             const int *choice, const ba_eval_result_t *r, const char *checkpoint,
                             ba_error *err) {
    choice_bits(c->p, choice, c->wbits);
    ba_cost_t cost;
    BA_TRY(ba_cost_config(c->m, c->wbits, &c->s->quant, &cost, err));
    ba_trial_t t = {0};
    t.number = number;
    snprintf(t.state, sizeof t.state, "%s", state);
    snprintf(t.method, sizeof t.method, "%s", method);
    t.avg_bits = cost.avg_bits;
    t.memory = (double)cost.memory_bytes;
    t.bops = cost.bops;
    t.latency = c->latency_j >= 0 ? ba_problem_budget_value(c->p, c->latency_j, choice) : NAN;
    t.predicted = c->has_sens ? ba_problem_objective(c->p, choice) : NAN;
    t.kl = r->kl, t.mse = r->mse, t.agreement = r->agreement, t.accuracy = r->accuracy;
    t.objective = r->objective;
    t.validation = NAN;
    t.samples = r->samples;
    t.nlayers = c->p->nlayers;
    t.w_bits = c->wbits;
    t.a_bits = c->abits;
    ba_status st = ba_db_trial_add(c->db, c->sid, &t, checkpoint, err);
    if (st != BA_OK) {
        /* Another process working on the same study may have stored this
         * trial first; the search is deterministic, so it must be the same one. */
        ba_trial_t old = {0};
        ba_error e2;
        if (ba_db_trial_get(c->db, c->sid, number, &old, &e2) == BA_OK) {
            int same = same_bits(&old, c->wbits, c->p->nlayers);
            ba_trial_free(&old);
            if (same) {
                ba_error_clear(err);
                return BA_OK;
            }
            return ba_error_set(
                err, BA_ERR_RUNTIME,
                "study: trial %lld is stored with other bit-widths (the study's inputs changed?)",
                (long long)number);
        }
    }
    return st;
}

static ba_status hook_store(void *ctx, const ba_search_trial_t *t, const char *checkpoint, ba_error *err) {
    return store_trial(ctx, t->number, t->state, t->method, t->choice, &t->res, checkpoint, err);
}

static double budget_use(const run_ctx_t *c, const int *choice) {
    return c->p->nbudgets ? ba_problem_budget_value(c->p, 0, choice) / c->p->limit[0] : NAN;
}

static void hook_progress(void *ctx, int64_t done, int64_t total, const ba_eval_result_t *best,
                          const int *choice) {
    run_ctx_t *c = ctx;
    if (!c->cb || !c->cb->progress) return;
    ba_study_progress_t pr = {"search", done, total, best ? best->objective : NAN, budget_use(c, choice)};
    c->cb->progress(c->cb->user, &pr);
}

static void phase(const run_ctx_t *c, const char *name, int64_t done, int64_t total) {
    if (!c->cb || !c->cb->progress) return;
    ba_study_progress_t pr = {name, done, total, NAN, NAN};
    c->cb->progress(c->cb->user, &pr);
}

static void sens_progress(void *user, uint64_t done, uint64_t total) {
    phase(user, "sensitivity", (int64_t)done, (int64_t)total);
}

/* Ω table from the file, the cache, or the estimator (then cached); method: an estimator to use
 * instead of the study's --sensitivity / --sensitivity-file (NULL: the study's). */
static ba_status cost_table(run_ctx_t *c, const char *method, double **cost, ba_error *err) {
    const ba_study_settings_t *s = c->s;
    int L = c->m->nlayers, nb = s->nbits;
    *cost = ba_calloc((size_t)L * nb, sizeof **cost, err);
    if (!*cost) return BA_ERR_NOMEM;
    if (!method && (c->zero_costs || (!s->sensitivity_file && !s->sensitivity[0])))
        return BA_OK; /* no Ω needed: zeros */
    if (!method) c->has_sens = 1;
    ba_sens_table_t *t = NULL;
    ba_status st;
    if (!method && s->sensitivity_file)
        st = ba_sens_read_file(s->sensitivity_file, c->m, s->bits, nb, &s->quant, &t, err);
    else {
        ba_sens_method_t meth;
        BA_TRY(ba_sens_method_parse(method ? method : s->sensitivity, &meth, err));
        ba_sens_opts_t o = ba_sens_opts_default();
        o.bits = s->bits, o.nbits = nb, o.seed = s->seed, o.tol = s->tol, o.max_probes = s->probes;
        o.loss = s->loss, o.quant = s->quant;
        if (s->metric[0] && !s->evaluator) BA_TRY(ba_metric_parse(s->metric, &o.metric, err)); /* measured */
        o.progress = sens_progress, o.progress_user = c;
        ba_study_sens_info_t info;
        st = ba_study_sensitivity(c->db, c->m, c->ds, c->labels, c->nlabels, meth, &o, &t, &info, err);
        if (st != BA_OK)
            ba_error_prefix(err, "%s %s", method ? "--extra-seed" : "--sensitivity",
                            method ? method : s->sensitivity);
        if (st == BA_OK && info.cache_write_failed && c->cb && c->cb->warning)
            c->cb->warning(c->cb->user, info.warning.msg);
    }
    for (int l = 0; st == BA_OK && l < L; l++)
        for (int j = 0; j < nb; j++) {
            int k = ba_sens_bits_index(t, s->bits[j]);
            (*cost)[(size_t)l * nb + j] = k >= 0 ? t->layers[l].cost[k] : NAN;
        }
    ba_sens_table_free(t);
    return st;
}

/* ilp+evo with --extra-seed measured also starts from the ILP plan of the measured-sensitivity
 * table (unless that is the study's own table, or an --evaluator scores the plans). */
static int wants_extra_seed(const run_ctx_t *c) {
    const ba_study_settings_t *s = c->s;
    return !strcmp(s->extra_seed, "measured") && !strcmp(s->method, "ilp+evo") && !s->has_sweep &&
           !s->evaluator && !c->zero_costs && (s->sensitivity_file || strcmp(s->sensitivity, "measured"));
}

static ba_status build_problem(run_ctx_t *c, ba_error *err) {
    const ba_study_settings_t *s = c->s;
    double *cost = NULL;
    ba_latency_table_t *lt = NULL;
    ba_hw_profile_t *hw = NULL;
    ba_budget_set_t budgets = s->budgets;
    ba_status st = BA_OK;
    if (s->has_sweep) {
        int j = ba_budget_set_find(&budgets, s->sweep.kind);
        if (j < 0) j = budgets.n++;
        budgets.items[j] = (ba_budget_t){s->sweep.kind, s->sweep.to};
    }
    if (s->latency_table) st = ba_latency_table_load(s->latency_table, &lt, err);
    if (st == BA_OK && s->hw) st = ba_hw_profile_load(s->hw, &hw, err);
    if (st == BA_OK) st = cost_table(c, NULL, &cost, err);
    if (st == BA_OK) {
        ba_study_problem_spec_t spec = {.bits = s->bits,
                                        .nbits = s->nbits,
                                        .cost = cost,
                                        .qcfg = &s->quant,
                                        .budgets = &budgets,
                                        .latency_table = lt,
                                        .hw = hw,
                                        .pins = (const char *const *)s->pins,
                                        .npins = s->npins,
                                        .ties = (const char *const *)s->ties,
                                        .nties = s->nties};
        st = ba_study_problem_from_model(c->m, &spec, &c->p, err);
        /* The second seed's problem: the same candidates and budgets, the measured table's Ω. */
        if (st == BA_OK && wants_extra_seed(c)) {
            free(cost);
            cost = NULL;
            st = cost_table(c, s->extra_seed, &cost, err);
            spec.cost = cost;
            if (st == BA_OK) st = ba_study_problem_from_model(c->m, &spec, &c->p_extra, err);
        }
    }
    c->latency_j = -1;
    for (int j = 0; st == BA_OK && j < c->p->nbudgets; j++)
        if (c->p->kind[j] == BA_BUDGET_LATENCY) c->latency_j = j;
    free(cost);
    ba_latency_table_free(lt);
    ba_hw_profile_free(hw);
    return st;
}

static ba_status make_evaluator(run_ctx_t *c, ba_error *err) {
    ba_eval_opts_t eo = {0};
    eo.labels = c->labels, eo.nlabels = c->nlabels, eo.labels_path = c->s->labels;
    BA_TRY(ba_evaluator_new(c->m, c->ds, &eo, &c->ev, err));
    c->N = ba_evaluator_samples(c->ev);
    const ba_tensor_t *fp = ba_evaluator_fp_output(c->ev);
    const ba_study_settings_t *s = c->s;
    if (s->evaluator) {
        BA_TRY(ba_extev_start(s->evaluator, s->evaluator_timeout, &c->ext, err));
        c->metric = ba_extev_maximize(c->ext) ? BA_METRIC_EVALUATOR_MAX : BA_METRIC_EVALUATOR;
    } else if (!s->metric[0]) {
        /* A study from before --metric: KL for class outputs (last axis of ≥ 2 scores), MSE otherwise. */
        c->is_class = fp->ndim >= 1 && fp->shape[fp->ndim - 1] >= 2;
        c->metric = c->is_class ? BA_METRIC_KL : BA_METRIC_MSE;
    } else {
        BA_TRY(ba_metric_parse(s->metric, &c->metric, err));
        if (c->metric == BA_METRIC_AUTO) c->metric = ba_evaluator_default_metric(c->ev);
    }
    if (c->db) BA_TRY(ba_db_study_set_metric(c->db, c->sid, ba_metric_name(c->metric), err));
    /* The evolution ranks on the search part and chooses among its elites on the rest. */
    c->Nsearch = c->N, c->Nvalid = 0;
    int evo = !strcmp(s->method, "evo") || !strcmp(s->method, "ilp+evo");
    if (evo && !s->has_sweep && !c->ext && s->validation_fraction > 0) { /* an evaluator has its own data */
        int64_t nv = (int64_t)floor(s->validation_fraction * (double)c->N + 0.5);
        if (nv >= 1 && c->N - nv >= 1) c->Nsearch = c->N - nv, c->Nvalid = nv;
    }
    c->config = ba_malloc((size_t)c->m->nlayers * 4 + 2, err);
    if (!c->config) return BA_ERR_NOMEM;
    BA_TRY(ba_wcache_new(c->m, &c->s->quant, &c->wc, err));
    BA_TRY(ba_eval_reuse_new(c->m, BA_EVAL_REUSE_DEFAULT_CAP, &c->reuse, err));
    c->overrides = ba_calloc((size_t)c->m->nvalues, sizeof *c->overrides, err);
    if (!c->overrides) return BA_ERR_NOMEM;
    if (c->s->quant.act_bits) {
        c->ranges = ba_calloc((size_t)c->m->nvalues, sizeof *c->ranges, err);
        if (!c->ranges) return BA_ERR_NOMEM;
        BA_TRY(ba_study_calibrate_acts(c->ev, c->m, c->ranges, err));
        c->acts = (ba_quant_acts_t){c->s->quant.act_bits, c->ranges};
        c->act_mark = ba_calloc((size_t)c->m->nvalues, 1, err);
        if (!c->act_mark) return BA_ERR_NOMEM;
        ba_quant_acts_mark(c->m, &c->acts, c->act_mark);
        c->act_hook = (ba_eval_hook_t){ba_quant_act_hook, &c->acts, c->act_mark};
    }
    return BA_OK;
}

static void ctx_free(run_ctx_t *c) {
    heartbeat_stop(c->hb);
    ba_extev_free(c->ext);
    free(c->config);
    free(c->overrides);
    free(c->ranges);
    free(c->act_mark);
    free(c->wbits);
    free(c->abits);
    ba_wcache_free(c->wc);
    ba_eval_reuse_free(c->reuse);
    ba_evaluator_free(c->ev);
    ba_problem_free(c->p);
    ba_problem_free(c->p_extra);
    free(c->labels);
    ba_dataset_free(c->ds);
    ba_model_free(c->m);
}

static ba_status load_inputs(run_ctx_t *c, ba_error *err) {
    const ba_study_settings_t *s = c->s;
    ba_load_opts_t lo = {.include_embeddings = s->include_embeddings};
    BA_TRY(ba_model_load(s->model, &lo, &c->m, err));
    BA_TRY(ba_study_settings_load_data(s, &c->ds, err));
    BA_TRY(ba_eval_resolve_costs(c->m, c->ds, (const char *const *)s->input_shapes, s->ninput_shapes,
                                 err)); /* MACs at the data's shapes */
    if (s->labels) BA_TRY(ba_labels_load(s->labels, &c->labels, &c->nlabels, err));
    c->wbits = ba_calloc((size_t)c->m->nlayers + 1, sizeof *c->wbits, err);
    c->abits = ba_calloc((size_t)c->m->nlayers + 1, sizeof *c->abits, err);
    if (!c->wbits || !c->abits) return BA_ERR_NOMEM;
    for (int l = 0; l < c->m->nlayers; l++) c->abits[l] = s->quant.act_bits;
    return BA_OK;
}

static ba_status make_plan(run_ctx_t *c, const char *study, const int *choice, int64_t trial,
                           const ba_eval_result_t *r, ba_study_result_t *out, ba_error *err) {
    const ba_study_settings_t *s = c->s;
    choice_bits(c->p, choice, c->wbits);
    BA_TRY(ba_plan_from_bits(c->m, c->wbits, &s->quant, &out->plan, err));
    if (c->latency_j >= 0) out->plan->totals.latency_us = ba_problem_budget_value(c->p, c->latency_j, choice);
    BA_TRY(ba_plan_set_metrics(out->plan, r->kl, r->agreement, r->accuracy, err));
    const char *keys[BA_BUDGET_NKINDS];
    double vals[BA_BUDGET_NKINDS];
    for (int i = 0; i < s->budgets.n; i++) {
        keys[i] = ba_budget_key(s->budgets.items[i].kind);
        vals[i] = s->budgets.items[i].limit;
    }
    return ba_plan_set_search(out->plan, study, trial, s->method, s->budgets.n, keys, vals,
                              ba_study_plan_seed(s), err);
}

ba_status ba_study_best_choice(ba_db_t *db, int64_t sid, const ba_problem_t *p, const char *name,
                               ba_trial_t **t, int *n, int **choice, ba_error *err) {
    ba_trial_query_t q = {.best = 1};
    *t = NULL;
    *n = 0;
    *choice = NULL;
    ba_status st = ba_db_trials_query(db, sid, &q, t, n, err);
    if (st == BA_OK && *n < 1) st = ba_error_set(err, BA_ERR_RUNTIME, "study '%s': no complete trial", name);
    int *ch = st == BA_OK ? ba_malloc((size_t)p->nlayers * sizeof *ch, err) : NULL;
    if (st == BA_OK && !ch) st = BA_ERR_NOMEM;
    const ba_trial_t *best = st == BA_OK ? &(*t)[0] : NULL;
    for (int l = 0; st == BA_OK && l < p->nlayers; l++) {
        ch[l] = best->nlayers == p->nlayers ? ba_problem_find(p, l, best->w_bits[l]) : -1;
        if (ch[l] < 0)
            st = ba_error_set(err, BA_ERR_INPUT, "study '%s': trial %lld does not fit the model", name,
                              (long long)best->number);
    }
    *choice = ch;
    return st;
}

/* The study's best trial (ba_study_best_choice) as out's trial, result and plan. */
static ba_status report_best(run_ctx_t *c, const char *name, ba_study_result_t *out, ba_error *err) {
    ba_trial_t *t;
    int n, *choice;
    ba_status st = ba_study_best_choice(c->db, c->sid, c->p, name, &t, &n, &choice, err);
    ba_study_info_t info;
    memset(&info, 0, sizeof info);
    if (st == BA_OK) st = ba_db_study_get(c->db, name, &info, err);
    if (st == BA_OK) {
        ba_eval_result_t r = {t[0].objective, t[0].kl, t[0].mse, t[0].agreement, t[0].accuracy, t[0].samples};
        out->res = r;
        out->trial = t[0].number;
        out->ntrials = info.ntrials;
        snprintf(out->metric, sizeof out->metric, "%s", info.metric);
        ba_metric_t mk = BA_METRIC_AUTO;
        ba_error e2;
        out->validation = NAN;
        if (info.metric[0] && ba_metric_parse(info.metric, &mk, &e2) == BA_OK)
            out->validation = ba_metric_from_objective(mk, t[0].validation);
        st = make_plan(c, name, choice, t[0].number, &r, out, err);
        char *rec = NULL;
        if (st == BA_OK) st = ba_db_trial_chosen(c->db, c->sid, t[0].number, &rec, err);
        if (st == BA_OK && rec) st = ba_plan_set_choice(out->plan, rec, err);
        free(rec);
        if (st == BA_OK && info.metric[0] && mk != BA_METRIC_AUTO)
            st = ba_plan_set_objective(out->plan, info.metric, ba_metric_from_objective(mk, r.objective),
                                       out->validation, err);
    }
    if (st == BA_OK) st = ba_db_memo_count(c->db, c->sid, &out->nmeasured, err);
    ba_db_study_info_free(&info);
    free(choice);
    ba_db_trials_free(t, n);
    return st;
}

/* Pareto on what was measured: a point is on the front when no other feasible
 * point has a measured objective and a used budget both no worse, one better
 * (the ILP's own mark compares predicted Ω, which the measured metric can contradict). */
static ba_status sweep_mark_measured(ba_study_sweep_point_t *pt, int n, ba_error *err) {
    double *v = ba_malloc(sizeof *v * 2 * (size_t)(n ? n : 1), err);
    int *on = ba_malloc(sizeof *on * (size_t)(n ? n : 1), err);
    ba_status st = v && on ? BA_OK : BA_ERR_NOMEM;
    for (int i = 0; st == BA_OK && i < n; i++) {
        v[2 * i] = pt[i].feasible ? pt[i].res.objective : NAN;
        v[2 * i + 1] = pt[i].feasible ? pt[i].used : NAN;
    }
    if (st == BA_OK) st = ba_pareto_mask(v, n, 2, on, err);
    for (int i = 0; st == BA_OK && i < n; i++) pt[i].pareto = on[i];
    free(v);
    free(on);
    return st;
}

static ba_status run_sweep(run_ctx_t *c, ba_study_result_t *out, ba_error *err) {
    const ba_study_settings_t *s = c->s;
    int j = -1;
    for (int k = 0; k < c->p->nbudgets; k++)
        if (c->p->kind[k] == s->sweep.kind) j = k;
    ba_sweep_t *sw = NULL;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    phase(c, "sweep", 0, ba_budget_sweep_npoints(&s->sweep));
    BA_TRY(ba_ilp_sweep(c->p, j, s->sweep.from, s->sweep.to, s->sweep.step, &io, &sw, err));
    ba_status st = BA_OK;
    int L = c->p->nlayers;
    out->sweep_key = (int)s->sweep.kind;
    out->sweep = ba_calloc((size_t)sw->n + 1, sizeof *out->sweep, err);
    if (!out->sweep) st = BA_ERR_NOMEM;
    int64_t number = 1;
    for (int i = 0; st == BA_OK && i < sw->n; i++) {
        const ba_sweep_point_t *pt = &sw->points[i];
        ba_study_sweep_point_t *o = &out->sweep[out->nsweep++];
        o->limit = pt->limit, o->feasible = pt->feasible, o->pareto = pt->pareto, o->trial = -1;
        o->res.objective = o->res.kl = o->res.mse = o->res.agreement = o->res.accuracy = NAN;
        if (!pt->feasible) continue;
        o->predicted = pt->sol.objective;
        o->used = pt->sol.budget[j];
        memcpy(o->budget, pt->sol.budget, sizeof o->budget);
        o->bits = ba_malloc((size_t)L * sizeof *o->bits, err);
        if (!o->bits) {
            st = BA_ERR_NOMEM;
            break;
        }
        memcpy(o->bits, pt->sol.bits, (size_t)L * sizeof *o->bits);
        /* Stored already (resume), or the same configuration as an earlier point: reuse. */
        ba_trial_t old = {0};
        ba_error e2;
        int found = 0;
        if (ba_db_trial_get(c->db, c->sid, number, &old, &e2) == BA_OK) {
            if (!same_bits(&old, o->bits, L))
                st = ba_error_set(err, BA_ERR_RUNTIME, "sweep: trial %lld is stored with other bit-widths",
                                  (long long)number);
            o->res = (ba_eval_result_t){isfinite(old.objective) ? old.objective
                                        : c->is_class           ? old.kl
                                                                : old.mse,
                                        old.kl,
                                        old.mse,
                                        old.agreement,
                                        old.accuracy,
                                        old.samples};
            found = 1;
            ba_trial_free(&old);
        }
        for (int k = 0; !found && k < out->nsweep - 1; k++)
            if (out->sweep[k].bits && !memcmp(out->sweep[k].bits, o->bits, (size_t)L * sizeof *o->bits)) {
                o->res = out->sweep[k].res;
                found = 2;
            }
        if (st == BA_OK && found != 1) {
            if (!found) st = hook_eval(c, pt->sol.choice, 0, &o->res, err), out->nevals++;
            if (st == BA_OK)
                st = store_trial(c, number, isfinite(o->res.objective) ? "complete" : "failed", "ilp",
                                 pt->sol.choice, &o->res, NULL, err);
        }
        o->trial = number++;
        phase(c, "sweep", i + 1, sw->n);
    }
    out->ntrials = number - 1;
    out->trial = -1;
    ba_sweep_free(sw);
    if (st == BA_OK) st = sweep_mark_measured(out->sweep, out->nsweep, err);
    return st;
}

/* The evolution's seeds with --extra-seed: the ILP plan of the study's table first (trial 1, the
 * final choice's reference), then the ILP plan of p_extra's when it differs; *nseeds = 1 when not. */
static ba_status extra_seed(run_ctx_t *c, const int *first, int **seeds, int *nseeds, ba_error *err) {
    const int L = c->p->nlayers;
    ba_ilp_opts_t io = ba_ilp_opts_default();
    ba_solution_t sol = {0};
    *seeds = NULL, *nseeds = 1;
    phase(c, "ilp", 0, 1);
    BA_TRY(ba_ilp_solve(c->p_extra, &io, &sol, err));
    int *s = ba_malloc(2 * (size_t)L * sizeof *s, err);
    ba_status st = s ? BA_OK : BA_ERR_NOMEM;
    int same = 1;
    for (int l = 0; st == BA_OK && l < L; l++) {
        s[l] = first[l];
        /* the same candidates in both problems; matched by width all the same */
        int b = c->p_extra->bits[c->p_extra->start[l] + sol.choice[l]];
        s[L + l] = ba_problem_find(c->p, l, b);
        if (s[L + l] < 0)
            st = ba_error_set(err, BA_ERR_RUNTIME, "--extra-seed: layer %s has no %d-bit candidate",
                              c->p->names[l], b);
        same &= s[L + l] == s[l];
    }
    ba_solution_free(&sol);
    if (st != BA_OK || same) {
        free(s);
        return st;
    }
    *seeds = s, *nseeds = 2;
    return BA_OK;
}

/* ---- the methods ---- */

static ba_status run_ilp(const ba_problem_t *p, const int *ilp, const ba_search_opts_t *so,
                         const ba_search_hooks_t *h, const char *ck, ba_search_result_t *out, ba_error *err) {
    return ba_search_single(p, ilp, so, h, ck, out, err);
}

static ba_status run_uniform(const ba_problem_t *p, const int *ilp, const ba_search_opts_t *so,
                             const ba_search_hooks_t *h, const char *ck, ba_search_result_t *out,
                             ba_error *err) {
    (void)ilp;
    int ubits = 0;
    int *choice = ba_malloc((size_t)p->nlayers * sizeof *choice + 1, err);
    if (!choice) return BA_ERR_NOMEM;
    ba_status st = ba_search_uniform_choice(p, choice, &ubits, err);
    if (st == BA_OK) st = ba_search_single(p, choice, so, h, ck, out, err);
    free(choice);
    return st;
}

static ba_status run_random(const ba_problem_t *p, const int *ilp, const ba_search_opts_t *so,
                            const ba_search_hooks_t *h, const char *ck, ba_search_result_t *out,
                            ba_error *err) {
    (void)ilp;
    return ba_search_random(p, so, h, ck, out, err);
}

/* ilp+evo starts from the ILP optimum. */
static ba_status run_ilp_evo(const ba_problem_t *p, const int *ilp, const ba_search_opts_t *so,
                             const ba_search_hooks_t *h, const char *ck, ba_search_result_t *out,
                             ba_error *err) {
    return ba_evo_run(p, ilp, so, h, ck, out, err);
}

/* evo alone starts from the widest uniform width (or, when no single width fits, the ILP's feasible point).
 */
static ba_status run_evo(const ba_problem_t *p, const int *ilp, const ba_search_opts_t *so,
                         const ba_search_hooks_t *h, const char *ck, ba_search_result_t *out, ba_error *err) {
    int ubits = 0;
    int *seed = ba_malloc((size_t)p->nlayers * sizeof *seed + 1, err);
    if (!seed) return BA_ERR_NOMEM;
    ba_error e2;
    if (ba_search_uniform_choice(p, seed, &ubits, &e2) != BA_OK)
        memcpy(seed, ilp, (size_t)p->nlayers * sizeof *seed);
    ba_status st = ba_evo_run(p, seed, so, h, ck, out, err);
    free(seed);
    return st;
}

/* nsga2 seeds its population from the ILP sweep of the cost table (and the uniform width). */
static ba_status run_nsga2(const ba_problem_t *p, const int *ilp, const ba_search_opts_t *so,
                           const ba_search_hooks_t *h, const char *ck, ba_search_result_t *out,
                           ba_error *err) {
    (void)ilp;
    return ba_nsga2_run(p, so, h, ck, out, err);
}

const ba_study_method_t ba_study_methods[] = {
    {"ilp", 1, run_ilp},       {"evo", 0, run_evo},         {"ilp+evo", 1, run_ilp_evo},
    {"random", 0, run_random}, {"uniform", 0, run_uniform}, {"nsga2", 1, run_nsga2},
};
const int ba_study_nmethods = (int)(sizeof ba_study_methods / sizeof ba_study_methods[0]);

const ba_study_method_t *ba_study_method_find(const char *name) {
    for (int i = 0; name && i < ba_study_nmethods; i++)
        if (!strcmp(ba_study_methods[i].name, name)) return &ba_study_methods[i];
    return NULL;
}

int ba_study_needs_sensitivity(const ba_study_settings_t *s) {
    const ba_study_method_t *m = ba_study_method_find(s->method);
    return s->has_sweep || (m && m->needs_sensitivity);
}

/* This worker's name in the work queue: HOST:PID:RANDOM. */
static void worker_name(const ba_study_work_t *w, char *out, size_t cap) {
    if (w->worker && w->worker[0]) {
        snprintf(out, cap, "%s", w->worker);
        return;
    }
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    unsigned tag = (unsigned)(((unsigned)getpid() * 2654435761u) ^ (unsigned)(ba_now() * 1e6)) & 0xffffffu;
    snprintf(out, cap, "%s:%d:%06x", host[0] ? host : "host", (int)getpid(), tag);
}

static ba_status run_study(ba_db_t *db, int64_t sid, const char *name, const ba_study_settings_t *s,
                           int was_complete, const ba_study_work_t *work, const ba_study_callbacks_t *cb,
                           ba_study_result_t *out, ba_error *err) {
    double t0 = ba_now();
    run_ctx_t c = {.db = db, .sid = sid, .s = s, .cb = cb, .latency_j = -1, .work = work};
    if (work) worker_name(work, c.worker, sizeof c.worker);
    snprintf(out->study, sizeof out->study, "%s", name);
    snprintf(out->method, sizeof out->method, "%s", s->has_sweep ? "ilp" : s->method);
    out->sweep_key = -1;
    out->trial = -1;
    out->was_complete = was_complete;
    ba_search_result_t sr = {0};
    ba_solution_t sol = {0};
    char *ck = NULL;
    ba_status st = load_inputs(&c, err);
    if (st == BA_OK) st = build_problem(&c, err);
    if (st == BA_OK) st = ba_db_checkpoint_get(db, sid, &ck, err);
    if (st == BA_OK && was_complete && ck && !s->has_sweep) {
        /* A finished study: report its best trial without searching again. */
        st = report_best(&c, name, out, err);
        goto done;
    }
    if (st == BA_OK && !s->has_sweep) {
        phase(&c, "ilp", 0, 1);
        ba_ilp_opts_t io = ba_ilp_opts_default();
        st = ba_ilp_solve(c.p, &io, &sol, err);
    }
    if (st == BA_OK) {
        phase(&c, "fp", 0, 1);
        st = make_evaluator(&c, err);
    }
    if (st == BA_OK && s->has_sweep) {
        st = run_sweep(&c, out, err);
        goto finish;
    }
    ba_search_opts_t so = {.method = s->method,
                           .seed = s->seed,
                           .generations = s->generations,
                           .offspring = s->offspring,
                           .nsamples = c.Nsearch,
                           .nvalid = c.Nvalid,
                           /* relmse and sqnr are Σ(q − fp)² over the FP energy of the samples scored: the
                            * windows' MSE sums to the whole part's numerator, their own ratios do not */
                           .window_stat = c.metric == BA_METRIC_RELMSE || c.metric == BA_METRIC_SQNR
                                              ? BA_EVO_WINDOW_MSE
                                              : BA_EVO_WINDOW_OBJECTIVE};
    ba_search_hooks_t h = {
        hook_eval,  hook_store, hook_progress, &c, hook_eval_at, hook_validated, work ? hook_prepare : NULL,
        hook_chosen};
    if (st == BA_OK && work) st = ba_db_set_client_name(db, c.worker, err);
    if (st == BA_OK && work) st = heartbeat_start(&c, err);
    const ba_study_method_t *meth = ba_study_method_find(s->method);
    if (st == BA_OK && !meth)
        st = ba_error_set(err, BA_ERR_INPUT, "--method %s: not one of %s", s->method, BA_STUDY_METHOD_NAMES);
    int *seeds = NULL, nseeds = 1;
    if (st == BA_OK && c.p_extra) st = extra_seed(&c, sol.choice, &seeds, &nseeds, err);
    if (st == BA_OK && nseeds > 1)
        st = ba_evo_run_seeds(c.p, seeds, nseeds, &so, &h, ck, &sr, err);
    else if (st == BA_OK)
        st = meth->run(c.p, sol.choice, &so, &h, ck, &sr, err);
    free(seeds);
    if (st == BA_OK) {
        out->search_seconds = sr.seconds;
        out->eval_seconds = sr.eval_seconds;
        /* The plan is the study's best trial by the one order every command uses
         * (BA_DB_BEST_ORDER): for the evolution, its choice on the validation part. */
        st = report_best(&c, name, out, err);
        if (st == BA_OK) out->ntrials = sr.ntrials;
        out->nevals = c.measured;
    }
finish:
    if (st == BA_OK) st = ba_db_study_set_state(db, sid, "complete", err);
done:
    if (st == BA_OK && c.p) {
        out->nlayers = c.p->nlayers;
        out->layer_names = ba_calloc((size_t)c.p->nlayers + 1, sizeof *out->layer_names, err);
        for (int l = 0; out->layer_names && l < c.p->nlayers; l++)
            out->layer_names[l] = ba_strdup(c.p->names[l], err);
    }
    out->seconds = ba_now() - t0;
    free(ck);
    ba_search_result_free(&sr);
    ba_solution_free(&sol);
    ctx_free(&c);
    return st;
}

double ba_study_result_metric(const ba_study_result_t *r) {
    ba_metric_t m;
    ba_error e;
    if (!r->metric[0] || ba_metric_parse(r->metric, &m, &e) != BA_OK) return NAN;
    return ba_metric_from_objective(m, r->res.objective);
}

void ba_study_result_free(ba_study_result_t *r) {
    if (!r) return;
    ba_plan_free(r->plan);
    for (int i = 0; r->layer_names && i < r->nlayers; i++) free(r->layer_names[i]);
    free(r->layer_names);
    for (int i = 0; i < r->nsweep; i++) free(r->sweep[i].bits);
    free(r->sweep);
    memset(r, 0, sizeof *r);
}

void ba_study_name(const char *model, char *out, size_t cap) {
    const char *base = strrchr(model, '/');
    base = base ? base + 1 : model;
    size_t n = strcspn(base, ".");
    if (n > 64) n = 64;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
    /* The pid and a clock read tell apart studies started in the same second. */
    unsigned tag = (unsigned)(((unsigned)getpid() * 2654435761u) ^ (unsigned)(ba_now() * 1e6)) & 0xffffu;
    snprintf(out, cap, "%.*s-%s-%04x", (int)n, base, ts, tag);
}

/* Pins, ties, budgets and their feasibility, checked before a study exists so
 * that bad input leaves none behind (Ω does not matter for that: zeros). */
static ba_status validate_with(const ba_study_settings_t *s, ba_model_t *m, ba_error *err) {
    run_ctx_t v = {.s = s, .m = m, .zero_costs = 1, .latency_j = -1};
    ba_solution_t sol = {0};
    ba_ilp_opts_t io = ba_ilp_opts_default();
    ba_status st = build_problem(&v, err);
    if (st == BA_OK && !s->has_sweep) st = ba_ilp_solve(v.p, &io, &sol, err);
    ba_solution_free(&sol);
    ba_problem_free(v.p);
    return st;
}

ba_status ba_study_validate(const ba_study_settings_t *s, ba_error *err) {
    ba_model_t *m = NULL;
    ba_dataset_t *ds = NULL;
    int64_t *labels = NULL, nl = 0;
    ba_load_opts_t lo = {.include_embeddings = s->include_embeddings};
    ba_status st = ba_model_load(s->model, &lo, &m, err);
    if (st == BA_OK) st = ba_study_settings_load_data(s, &ds, err);
    if (st == BA_OK)
        st = ba_eval_resolve_costs(m, ds, (const char *const *)s->input_shapes, s->ninput_shapes, err);
    if (st == BA_OK && s->labels) st = ba_labels_load(s->labels, &labels, &nl, err);
    if (st == BA_OK && labels && nl != ba_dataset_samples(ds))
        st = ba_error_set(err, BA_ERR_INPUT, "--labels %s: %lld labels for %lld samples of --data", s->labels,
                          (long long)nl, (long long)ba_dataset_samples(ds));
    if (st == BA_OK && s->sensitivity_file) {
        ba_sens_table_t *t = NULL;
        st = ba_sens_read_file(s->sensitivity_file, m, s->bits, s->nbits, &s->quant, &t, err);
        ba_sens_table_free(t);
    }
    if (st == BA_OK) st = validate_with(s, m, err);
    free(labels);
    ba_dataset_free(ds);
    ba_model_free(m);
    return st;
}

ba_status ba_study_search(ba_db_t *db, const char *study, const ba_study_settings_t *s,
                          const ba_study_callbacks_t *cb, ba_study_result_t *out, ba_error *err) {
    ba_study_work_t shared = {0};
    return ba_study_search_as(db, study, s, ba_db_is_shared(db) ? &shared : NULL, cb, out, err);
}

ba_status ba_study_search_as(ba_db_t *db, const char *study, const ba_study_settings_t *s,
                             const ba_study_work_t *w, const ba_study_callbacks_t *cb, ba_study_result_t *out,
                             ba_error *err) {
    memset(out, 0, sizeof *out);
    char name[256];
    if (study)
        snprintf(name, sizeof name, "%s", study);
    else
        ba_study_name(s->model, name, sizeof name);
    ba_study_info_t info;
    ba_error e2;
    if (ba_db_study_get(db, name, &info, &e2) == BA_OK) {
        /* The same search asked again (same settings, so the same inputs and
         * seed) continues that study, or reports its result when finished —
         * as Optuna's load_if_exists does; other settings under the name are
         * refused, so nothing stored is ever mixed with another search. */
        char *mine = NULL;
        ba_status st0 = ba_study_settings_to_json(s, &mine, err);
        int same = st0 == BA_OK && !strcmp(mine, info.settings);
        free(mine);
        ba_db_study_info_free(&info);
        if (st0 != BA_OK) return st0;
        if (same) return ba_study_work(db, name, w, cb, out, err);
        return ba_error_set(
            err, BA_ERR_INPUT,
            "--study %s: a study of that name exists with other settings; run the new settings "
            "under another name (--study NEW), or drop the old study first "
            "(`bitalloc studies --delete %s`)",
            name, name);
    }
    /* The study row records the inputs' digests; loading here also validates them before anything is written.
     */
    ba_model_t *m = NULL;
    ba_dataset_t *ds = NULL;
    ba_load_opts_t lo = {.include_embeddings = s->include_embeddings};
    char *settings = NULL;
    char data_sha[65] = "";
    ba_db_layer_t *layers = NULL;
    ba_status st = ba_model_load(s->model, &lo, &m, err);
    if (st == BA_OK) st = ba_study_settings_load_data(s, &ds, err);
    if (st == BA_OK)
        st = ba_eval_resolve_costs(m, ds, (const char *const *)s->input_shapes, s->ninput_shapes, err);
    if (st == BA_OK) ba_dataset_sha256(ds, data_sha);
    if (st == BA_OK) st = ba_study_settings_to_json(s, &settings, err);
    if (st == BA_OK && !(layers = ba_calloc((size_t)m->nlayers + 1, sizeof *layers, err))) st = BA_ERR_NOMEM;
    for (int l = 0; st == BA_OK && l < m->nlayers; l++)
        layers[l] =
            (ba_db_layer_t){m->layers[l].name, m->layers[l].op, m->layers[l].params, m->layers[l].macs};
    if (st == BA_OK) st = validate_with(s, m, err);
    int64_t sid = 0;
    if (st == BA_OK)
        st = ba_db_study_create(db, name, s->model, m->sha256, data_sha, settings, layers, m->nlayers, &sid,
                                err);
    free(layers);
    free(settings);
    ba_dataset_free(ds);
    ba_model_free(m);
    if (st != BA_OK) return st;
    st = run_study(db, sid, name, s, 0, w, cb, out, err);
    out->created = 1;
    if (st != BA_OK && st != BA_ERR_NOMEM) {
        /* A failed run (infeasible, bad input found late) leaves a failed study, not a running one. */
        ba_error e3;
        ba_db_study_set_state(db, sid, "failed", &e3);
    }
    return st;
}

ba_status ba_study_resume(ba_db_t *db, const char *name, const ba_study_callbacks_t *cb,
                          ba_study_result_t *out, ba_error *err) {
    ba_study_work_t shared = {0};
    return ba_study_work(db, name, ba_db_is_shared(db) ? &shared : NULL, cb, out, err);
}

ba_status ba_study_work(ba_db_t *db, const char *name, const ba_study_work_t *work,
                        const ba_study_callbacks_t *cb, ba_study_result_t *out, ba_error *err) {
    memset(out, 0, sizeof *out);
    ba_study_info_t info;
    BA_TRY(ba_db_study_get(db, name, &info, err));
    ba_study_settings_t s;
    ba_status st = ba_study_settings_from_json(info.settings, &s, err);
    if (st != BA_OK) {
        ba_error_prefix(err, "study '%s'", name);
        ba_db_study_info_free(&info);
        return st;
    }
    char sha[65];
    ba_error e2;
    if (ba_sha256_file(s.model, sha, &e2) != BA_OK)
        st = ba_error_set(err, BA_ERR_INPUT, "%s: cannot read the model of study '%s' (%s)", s.model, name,
                          e2.msg);
    else if (strcmp(sha, info.model_sha256) != 0)
        st = ba_error_set(
            err, BA_ERR_INPUT,
            "%s: the model file changed since study '%s' started (sha256 %.12s…, was %.12s…); refusing "
            "to resume",
            s.model, name, sha, info.model_sha256);
    if (st == BA_OK) {
        ba_dataset_t *ds = NULL;
        if (ba_study_settings_load_data(&s, &ds, &e2) != BA_OK)
            st = ba_error_set(err, BA_ERR_INPUT, "study '%s': cannot load its data: %s", name, e2.msg);
        else {
            char dsha[65];
            ba_dataset_sha256(ds, dsha);
            if (info.data_sha256[0] && strcmp(dsha, info.data_sha256) != 0)
                st = ba_error_set(err, BA_ERR_INPUT,
                                  "%s: the data changed since study '%s' started; refusing to resume",
                                  s.ndata ? s.data[0] : "--data", name);
        }
        ba_dataset_free(ds);
    }
    if (st == BA_OK && s.sensitivity_file) {
        if (ba_sha256_file(s.sensitivity_file, sha, &e2) != BA_OK ||
            strcmp(sha, s.sensitivity_file_sha256) != 0)
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s: the sensitivity file changed or is gone since study '%s' started",
                              s.sensitivity_file, name);
    }
    if (st == BA_OK) {
        int complete = !strcmp(info.state, "complete");
        if (!strcmp(info.state, "failed")) ba_db_study_set_state(db, info.id, "running", &e2);
        st = run_study(db, info.id, name, &s, complete, work, cb, out, err);
    }
    ba_study_settings_free(&s);
    ba_db_study_info_free(&info);
    return st;
}
