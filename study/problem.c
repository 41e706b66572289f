/* Builds a ba_problem_t from a model's layer table (SPEC §2, §4): budget
 * coefficients through quant/cost.h and the latency sources of search/hw.h.
 * Here in study/ so that search/ (the solvers) needs neither quant/ nor a model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "quant/cost.h"
#include "quant/quant.h"
#include "search/hw.h"
#include "search/problem.h"
#include "study/study.h"

ba_status ba_study_problem_from_model(const ba_model_t *m, const ba_study_problem_spec_t *spec,
                                      ba_problem_t **out, ba_error *err) {
    *out = NULL;
    int L = m->nlayers, nb = spec->nbits;
    if (L == 0) return ba_error_set(err, BA_ERR_INPUT, "%s: no quantizable layer (SPEC §2)", m->path);
    if (nb <= 0) return ba_error_set(err, BA_ERR_INPUT, "--bits: no candidate width");
    ba_quant_cfg_t dflt = ba_quant_cfg_default();
    const ba_quant_cfg_t *qcfg = spec->qcfg ? spec->qcfg : &dflt;
    const ba_budget_set_t *budgets = spec->budgets;
    if (budgets && ba_budget_set_find(budgets, BA_BUDGET_LATENCY) >= 0 && !spec->latency_table && !spec->hw)
        return ba_error_set(err, BA_ERR_INPUT,
                            "--budget latency: needs --latency-table FILE.csv or --hw PROFILE");

    ba_status st = BA_OK;
    ba_problem_t *p = NULL;
    const char **names = ba_malloc((size_t)L * sizeof *names, err);
    int *ncand = ba_malloc((size_t)L * sizeof *ncand, err);
    int *bits = ba_malloc((size_t)L * nb * sizeof *bits, err);
    double *cost = ba_malloc((size_t)L * nb * sizeof *cost, err);
    double *coef = ba_malloc((size_t)L * nb * sizeof *coef, err);
    int *src = ba_malloc((size_t)L * nb * sizeof *src, err); /* flat candidate -> layer*nb + j */
    if (!names || !ncand || !bits || !cost || !coef || !src) {
        st = err->code;
        goto done;
    }
    int n = 0;
    for (int l = 0; l < L; l++) {
        names[l] = m->layers[l].name;
        ncand[l] = 0;
        for (int j = 0; j < nb; j++) {
            double c = spec->cost ? spec->cost[(size_t)l * nb + j] : 0.0;
            if (isnan(c)) continue; /* no Ω for this width: not a candidate of this layer */
            /* llama.cpp cannot store it (a row no block of its type divides, no fallback): neither */
            if (isnan(ba_cost_layer_bits(&m->layers[l], spec->bits[j], qcfg))) continue;
            bits[n] = spec->bits[j], cost[n] = c, src[n] = l * nb + j;
            n++, ncand[l]++;
        }
        if (!ncand[l]) {
            st = ba_error_set(err, BA_ERR_INPUT, "layer %s: no candidate width has a cost%s", names[l],
                              qcfg->backend == BA_BACKEND_LLAMA ? " and a llama.cpp type for its rows" : "");
            goto done;
        }
    }
    if ((st = ba_problem_create(L, names, ncand, bits, cost, &p, err)) != BA_OK) goto done;

    int64_t total_params = 0;
    for (int l = 0; l < L; l++) total_params += m->layers[l].params;
    for (int bi = 0; budgets && bi < budgets->n; bi++) {
        ba_budget_kind_t kind = budgets->items[bi].kind;
        double offset = 0;
        int macs_unknown = 0;
        for (int l = 0; l < L; l++) macs_unknown |= m->layers[l].macs < 0;
        if ((kind == BA_BUDGET_BOPS || (kind == BA_BUDGET_LATENCY && !spec->latency_table)) && macs_unknown) {
            st = ba_error_set(err, BA_ERR_INPUT,
                              "%s budget: %s has dynamic input dimensions and its MACs were not resolved at "
                              "concrete shapes (give --data or --input-shape)",
                              ba_budget_key(kind), m->path);
            goto done;
        }
        for (int i = 0; i < n && st == BA_OK; i++) {
            const ba_layer_t *ly = &m->layers[src[i] / nb];
            int b = bits[i];
            switch (kind) {
            case BA_BUDGET_AVG_BITS:
                coef[i] = total_params > 0
                              ? ba_cost_layer_bits(ly, b, qcfg) * (double)ly->params / (double)total_params
                              : 0.0;
                break;
            case BA_BUDGET_MEMORY: coef[i] = (double)ba_cost_layer_memory(ly, b, qcfg); break;
            case BA_BUDGET_BOPS: coef[i] = ba_cost_layer_bops(ly, b, qcfg->act_bits); break;
            case BA_BUDGET_LATENCY:
                if (spec->latency_table)
                    st = ba_latency_table_get(spec->latency_table, ly->name, b, &coef[i], err);
                else
                    st = ba_hw_layer_latency(spec->hw, ly->name, ba_cost_layer_memory(ly, b, qcfg), ly->macs,
                                             b, &coef[i], err);
                break;
            }
        }
        if (st != BA_OK) goto done;
        /* Memory counts every other initializer at its stored width (SPEC §4). */
        if (kind == BA_BUDGET_MEMORY) offset = (double)m->other_init_bytes;
        if ((st = ba_problem_add_budget(p, kind, budgets->items[bi].limit, offset, coef, err)) != BA_OK)
            goto done;
    }
    for (int i = 0; i < spec->npins && st == BA_OK; i++) st = ba_problem_pin(p, spec->pins[i], err);
    for (int i = 0; i < spec->nties && st == BA_OK; i++) st = ba_problem_tie(p, spec->ties[i], err);
done:
    free(names);
    free(ncand);
    free(bits);
    free(cost);
    free(coef);
    free(src);
    if (st != BA_OK)
        ba_problem_free(p);
    else
        *out = p;
    return st;
}
