/* Study settings (study.h): what a study is a function of, with its one JSON
 * writer and its one reader. `search` writes them into the study; `resume`
 * and `export` read them back through ba_study_settings_from_json only. */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "study/study.h"

/* ---- settings ---- */

void ba_study_settings_init(ba_study_settings_t *s) {
    memset(s, 0, sizeof *s);
    s->quant = ba_quant_cfg_default();
    snprintf(s->method, sizeof s->method, "ilp+evo");
    snprintf(s->sensitivity, sizeof s->sensitivity, "hessian");
    ba_error e;
    ba_bits_parse(BA_BITS_DEFAULT, s->bits, &s->nbits, &e);
    s->generations = BA_EVO_DEFAULT_GENERATIONS;
    s->offspring = BA_EVO_DEFAULT_OFFSPRING;
    s->tol = BA_SENS_DEFAULT_TOL;
    s->probes = BA_SENS_DEFAULT_PROBES;
    s->loss = BA_SENS_LOSS_AUTO;
    snprintf(s->metric, sizeof s->metric, "auto");
    s->validation_fraction = BA_STUDY_DEFAULT_VALIDATION_FRACTION;
    snprintf(s->extra_seed, sizeof s->extra_seed, "measured");
}

void ba_study_settings_free(ba_study_settings_t *s) {
    free(s->model);
    free(s->evaluator);
    for (int i = 0; i < s->ndata; i++) free(s->data[i]);
    for (int i = 0; i < s->nsample_axes; i++) free(s->sample_axes[i]);
    free(s->labels);
    free(s->sensitivity_file);
    for (int i = 0; i < s->npins; i++) free(s->pins[i]);
    for (int i = 0; i < s->nties; i++) free(s->ties[i]);
    free(s->latency_table);
    free(s->hw);
    for (int i = 0; i < s->ninput_shapes; i++) free(s->input_shapes[i]);
    memset(s, 0, sizeof *s);
}

ba_status ba_study_settings_set_path(char **slot, const char *path, ba_error *err) {
    free(*slot);
    *slot = NULL;
    if (!path) return BA_OK;
    char *abs = realpath(path, NULL);
    *slot = abs ? abs : ba_strdup(path, err);
    return *slot ? BA_OK : BA_ERR_NOMEM;
}

ba_status ba_study_settings_add_data(ba_study_settings_t *s, const char *spec, ba_error *err) {
    if (s->ndata >= BA_STUDY_MAX_DATA)
        return ba_error_set(err, BA_ERR_INPUT, "--data: more than %d inputs", BA_STUDY_MAX_DATA);
    const char *eq = strchr(spec, '=');
    const char *file = eq ? eq + 1 : spec;
    char *abs = realpath(file, NULL);
    char *out;
    if (!abs)
        out = ba_strdup(spec, err);
    else {
        size_t nl = eq ? (size_t)(eq - spec) + 1 : 0;
        out = ba_malloc(nl + strlen(abs) + 1, err);
        if (out) {
            memcpy(out, spec, nl);
            strcpy(out + nl, abs);
        }
        free(abs);
    }
    if (!out) return BA_ERR_NOMEM;
    s->data[s->ndata++] = out;
    return BA_OK;
}

ba_status ba_study_settings_add_sample_axis(ba_study_settings_t *s, const char *spec, ba_error *err) {
    if (s->nsample_axes >= BA_STUDY_MAX_DATA)
        return ba_error_set(err, BA_ERR_INPUT, "--sample-axis: more than %d inputs", BA_STUDY_MAX_DATA);
    char *c = ba_strdup(spec, err);
    if (!c) return BA_ERR_NOMEM;
    s->sample_axes[s->nsample_axes++] = c;
    return BA_OK;
}

ba_status ba_study_settings_load_data(const ba_study_settings_t *s, ba_dataset_t **out, ba_error *err) {
    return ba_dataset_load_axes((const char *const *)s->data, s->ndata, (const char *const *)s->sample_axes,
                                s->nsample_axes, out, err);
}

static json_t *str_or_null(const char *s) {
    return s ? json_string(s) : json_null();
}
static const char *loss_name(ba_sens_loss_t l) {
    return l == BA_SENS_LOSS_CE ? "ce" : l == BA_SENS_LOSS_MSE ? "mse" : "auto";
}

ba_status ba_study_settings_to_json(const ba_study_settings_t *s, char **out, ba_error *err) {
    char gran[32];
    json_t *data = json_array(), *bits = json_array(), *budgets = json_object(), *pins = json_array(),
           *ties = json_array();
    for (int i = 0; i < s->ndata; i++) json_array_append_new(data, json_string(s->data[i]));
    for (int i = 0; i < s->nbits; i++) json_array_append_new(bits, json_integer(s->bits[i]));
    for (int i = 0; i < s->budgets.n; i++)
        json_object_set_new(budgets, ba_budget_key(s->budgets.items[i].kind),
                            json_real(s->budgets.items[i].limit));
    for (int i = 0; i < s->npins; i++) json_array_append_new(pins, json_string(s->pins[i]));
    for (int i = 0; i < s->nties; i++) json_array_append_new(ties, json_string(s->ties[i]));
    json_t *sweep = s->has_sweep ? json_pack("{s:s, s:f, s:f, s:f}", "key", ba_budget_key(s->sweep.kind),
                                             "from", s->sweep.from, "to", s->sweep.to, "step", s->sweep.step)
                                 : json_null();
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    json_t *j = json_pack(
        "{s:s, s:o, s:o, s:{s:s, s:s, s:s, s:o}, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:i, s:i, s:o, "
        "s:o, "
        "s:o, s:s, s:f, s:i, s:b}",
        "model", s->model ? s->model : "", "data", data, "labels", str_or_null(s->labels), "quantizer",
        "scheme", ba_quant_scheme_name(s->quant.scheme), "granularity",
        ba_quant_granularity_str(&s->quant, gran, sizeof gran), "clip", ba_quant_clip_name(s->quant.clip),
        "act_bits", s->quant.act_bits ? json_integer(s->quant.act_bits) : json_null(), "budgets", budgets,
        "method", s->method, "sensitivity", s->sensitivity[0] ? json_string(s->sensitivity) : json_null(),
        "sensitivity_file", str_or_null(s->sensitivity_file), "sensitivity_file_sha256",
        s->sensitivity_file ? json_string(s->sensitivity_file_sha256) : json_null(), "bits", bits, "pins",
        pins, "ties", ties, "seed", seed, "generations", s->generations, "offspring", s->offspring, "sweep",
        sweep, "latency_table", str_or_null(s->latency_table), "hw", str_or_null(s->hw), "loss",
        loss_name(s->loss), "tol", s->tol, "samples", s->probes, "include_embeddings", s->include_embeddings);
    /* Only for llama.cpp targets, so that the settings (and the identity) of other studies stay as they were.
     */
    if (j && s->quant.backend != BA_BACKEND_ONNX)
        json_object_set_new(json_object_get(j, "quantizer"), "backend",
                            json_string(ba_quant_backend_name(s->quant.backend)));
    if (j && s->metric[0]) {
        json_object_set_new(j, "metric", json_string(s->metric));
        json_object_set_new(j, "validation_fraction", json_real(s->validation_fraction));
    }
    if (j && strcmp(s->extra_seed, "none")) json_object_set_new(j, "extra_seed", json_string(s->extra_seed));
    if (j && s->evaluator) {
        json_object_set_new(j, "evaluator", json_string(s->evaluator));
        json_object_set_new(j, "evaluator_timeout", json_real(s->evaluator_timeout));
    }
    /* Only when given, so that the settings (and the identity) of other studies stay as they were. */
    if (j && s->ninput_shapes) {
        json_t *shp = json_array();
        for (int i = 0; i < s->ninput_shapes; i++)
            json_array_append_new(shp, json_string(s->input_shapes[i]));
        json_object_set_new(j, "input_shapes", shp);
    }
    /* Sample axes are written only when given, so other studies' settings keep their text. */
    if (j && s->nsample_axes > 0) {
        json_t *axes = json_array();
        for (int i = 0; i < s->nsample_axes; i++) json_array_append_new(axes, json_string(s->sample_axes[i]));
        json_object_set_new(j, "sample_axes", axes);
    }
    /* The seed is written as a string: a 64-bit unsigned value does not fit JSON integers in every reader. */
    *out = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    return *out ? BA_OK : ba_error_set(err, BA_ERR_NOMEM, "study settings: out of memory");
}

static ba_status dup_str(const json_t *v, char **slot, ba_error *err) {
    *slot = NULL;
    if (!v || json_is_null(v)) return BA_OK;
    if (!json_is_string(v)) return ba_error_set(err, BA_ERR_INPUT, "study settings: expected a string");
    *slot = ba_strdup(json_string_value(v), err);
    return *slot ? BA_OK : BA_ERR_NOMEM;
}

ba_status ba_study_settings_from_json(const char *text, ba_study_settings_t *s, ba_error *err) {
    ba_study_settings_init(s);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return ba_error_set(err, BA_ERR_INPUT, "study settings: not JSON (%s)", je.text);
    }
    ba_status st = BA_OK;
#define BAD(what) (st = ba_error_set(err, BA_ERR_INPUT, "study settings: %s", what))
    const json_t *q = json_object_get(j, "quantizer"), *v;
    if ((st = dup_str(json_object_get(j, "model"), &s->model, err)) != BA_OK || !s->model) {
        if (st == BA_OK) BAD("no model");
        goto done;
    }
    v = json_object_get(j, "data");
    if (!json_is_array(v) || json_array_size(v) > BA_STUDY_MAX_DATA) {
        BAD("bad data list");
        goto done;
    }
    for (size_t i = 0; i < json_array_size(v) && st == BA_OK; i++)
        if ((st = dup_str(json_array_get(v, i), &s->data[s->ndata], err)) == BA_OK && s->data[s->ndata])
            s->ndata++;
    v = json_object_get(j, "sample_axes");
    if (v && (!json_is_array(v) || json_array_size(v) > BA_STUDY_MAX_DATA)) {
        BAD("bad sample_axes list");
        goto done;
    }
    for (size_t i = 0; v && i < json_array_size(v) && st == BA_OK; i++)
        if ((st = dup_str(json_array_get(v, i), &s->sample_axes[s->nsample_axes], err)) == BA_OK &&
            s->sample_axes[s->nsample_axes])
            s->nsample_axes++;
    if (st == BA_OK) st = dup_str(json_object_get(j, "labels"), &s->labels, err);
    if (st == BA_OK && json_is_object(q)) {
        const char *sc = json_string_value(json_object_get(q, "scheme")),
                   *gr = json_string_value(json_object_get(q, "granularity")),
                   *cl = json_string_value(json_object_get(q, "clip"));
        if (sc) st = ba_quant_cfg_parse_scheme(sc, &s->quant, err);
        if (st == BA_OK && gr) st = ba_quant_cfg_parse_granularity(gr, &s->quant, err);
        if (st == BA_OK && cl) st = ba_quant_cfg_parse_clip(cl, &s->quant, err);
        const char *be = json_string_value(json_object_get(q, "backend"));
        if (st == BA_OK && be) st = ba_quant_cfg_parse_backend(be, &s->quant, err);
        v = json_object_get(q, "act_bits");
        if (st == BA_OK && v && !json_is_null(v)) {
            if (!json_is_integer(v) || !ba_bits_valid((int)json_integer_value(v))) {
                BAD("quantizer.act_bits: expected null or a width");
                goto done;
            }
            s->quant.act_bits = (int)json_integer_value(v);
        }
    } else if (st == BA_OK && q && !json_is_null(q)) {
        BAD("quantizer: expected an object");
        goto done;
    }
    v = json_object_get(j, "budgets");
    const char *key;
    json_t *val;
    if (st == BA_OK && json_is_object(v)) json_object_foreach((json_t *)v, key, val) {
            ba_budget_kind_t kind;
            if (st != BA_OK) break;
            if ((st = ba_budget_kind_parse(key, &kind, err)) != BA_OK) break;
            if (!json_is_number(val) || !isfinite(json_number_value(val)) ||
                s->budgets.n >= BA_BUDGET_NKINDS) {
                BAD("bad budget");
                break;
            }
            s->budgets.items[s->budgets.n++] = (ba_budget_t){kind, json_number_value(val)};
        }
    if (st != BA_OK) goto done;
    v = json_object_get(j, "method");
    if (!json_is_string(v) || strlen(json_string_value(v)) >= sizeof s->method) {
        BAD("bad method");
        goto done;
    }
    snprintf(s->method, sizeof s->method, "%s", json_string_value(v));
    v = json_object_get(j, "sensitivity");
    s->sensitivity[0] = '\0';
    if (json_is_string(v)) snprintf(s->sensitivity, sizeof s->sensitivity, "%s", json_string_value(v));
    if ((st = dup_str(json_object_get(j, "sensitivity_file"), &s->sensitivity_file, err)) != BA_OK) goto done;
    v = json_object_get(j, "sensitivity_file_sha256");
    if (json_is_string(v))
        snprintf(s->sensitivity_file_sha256, sizeof s->sensitivity_file_sha256, "%s", json_string_value(v));
    v = json_object_get(j, "bits");
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > BA_BITS_MAX_CANDIDATES) {
        BAD("bad bits");
        goto done;
    }
    s->nbits = 0;
    for (size_t i = 0; i < json_array_size(v); i++)
        s->bits[s->nbits++] = (int)json_integer_value(json_array_get(v, i));
    const char *names[2] = {"pins", "ties"};
    for (int w = 0; w < 2 && st == BA_OK; w++) {
        v = json_object_get(j, names[w]);
        for (size_t i = 0;
             json_is_array(v) && i < json_array_size(v) && i < BA_STUDY_MAX_RULES && st == BA_OK; i++) {
            char **slot = w == 0 ? &s->pins[s->npins] : &s->ties[s->nties];
            if ((st = dup_str(json_array_get(v, i), slot, err)) == BA_OK && *slot) {
                if (w == 0)
                    s->npins++;
                else
                    s->nties++;
            }
        }
    }
    if (st != BA_OK) goto done;
    v = json_object_get(j, "seed");
    if (json_is_string(v))
        s->seed = strtoull(json_string_value(v), NULL, 10);
    else if (json_is_integer(v))
        s->seed = (uint64_t)json_integer_value(v);
    v = json_object_get(j, "generations");
    if (json_is_integer(v)) s->generations = (int)json_integer_value(v);
    v = json_object_get(j, "offspring");
    if (json_is_integer(v)) s->offspring = (int)json_integer_value(v);
    v = json_object_get(j, "sweep");
    if (json_is_object(v)) {
        ba_budget_kind_t kind;
        if ((st = ba_budget_kind_parse(json_string_value(json_object_get(v, "key"))
                                           ? json_string_value(json_object_get(v, "key"))
                                           : "",
                                       &kind, err)) != BA_OK)
            goto done;
        s->has_sweep = 1;
        s->sweep = (ba_budget_sweep_t){kind, json_number_value(json_object_get(v, "from")),
                                       json_number_value(json_object_get(v, "to")),
                                       json_number_value(json_object_get(v, "step"))};
    }
    if ((st = dup_str(json_object_get(j, "latency_table"), &s->latency_table, err)) != BA_OK) goto done;
    if ((st = dup_str(json_object_get(j, "hw"), &s->hw, err)) != BA_OK) goto done;
    v = json_object_get(j, "loss");
    if (json_is_string(v))
        s->loss = !strcmp(json_string_value(v), "ce")    ? BA_SENS_LOSS_CE
                  : !strcmp(json_string_value(v), "mse") ? BA_SENS_LOSS_MSE
                                                         : BA_SENS_LOSS_AUTO;
    v = json_object_get(j, "tol");
    if (json_is_number(v)) s->tol = json_number_value(v);
    v = json_object_get(j, "samples");
    if (json_is_integer(v)) s->probes = (int)json_integer_value(v);
    s->include_embeddings = json_is_true(json_object_get(j, "include_embeddings"));
    if ((st = dup_str(json_object_get(j, "evaluator"), &s->evaluator, err)) != BA_OK) goto done;
    v = json_object_get(j, "evaluator_timeout");
    if (json_is_number(v)) s->evaluator_timeout = json_number_value(v);
    v = json_object_get(j, "metric");
    if (json_is_string(v)) {
        ba_metric_t mk;
        ba_error me;
        if (ba_metric_parse(json_string_value(v), &mk, &me) != BA_OK) {
            BAD("bad metric");
            goto done;
        }
        snprintf(s->metric, sizeof s->metric, "%s", json_string_value(v));
        v = json_object_get(j, "validation_fraction");
        s->validation_fraction = json_is_number(v) ? json_number_value(v) : 0;
    } else {
        s->metric[0] = '\0'; /* a study from before --metric: its objective and no validation part */
        s->validation_fraction = 0;
    }
    v = json_object_get(j, "extra_seed"); /* absent: a study from before --extra-seed */
    if (json_is_string(v) && strcmp(json_string_value(v), "measured") &&
        strcmp(json_string_value(v), "none")) {
        BAD("bad extra_seed");
        goto done;
    }
    snprintf(s->extra_seed, sizeof s->extra_seed, "%s", json_is_string(v) ? json_string_value(v) : "none");
    v = json_object_get(j, "input_shapes");
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v) && i < BA_STUDY_MAX_DATA && st == BA_OK;
         i++)
        if ((st = dup_str(json_array_get(v, i), &s->input_shapes[s->ninput_shapes], err)) == BA_OK &&
            s->input_shapes[s->ninput_shapes])
            s->ninput_shapes++;
#undef BAD
done:
    json_decref(j);
    if (st != BA_OK) ba_study_settings_free(s);
    return st;
}

int64_t ba_study_plan_seed(const ba_study_settings_t *s) {
    /* Plans carry seeds as signed 64-bit JSON integers; a larger seed is recorded as null. */
    return s->seed <= (uint64_t)INT64_MAX ? (int64_t)s->seed : -1;
}
