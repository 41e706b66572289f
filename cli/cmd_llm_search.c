/* `bitalloc llm-search` and `bitalloc llm-quantize` (docs/llm-search.md, docs/llm-quantize.md),
 * and the LLM branches of `resume` and `export --format llama`: a GGUF search as a study
 * (study/llm_study.h) and its outputs. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/guard.h"
#include "cli/search_report.h"
#include "study/llm_study.h"

static ba_status settings_from_opts(const ba_cli_opts *o, ba_llm_settings_t *s, ba_error *err) {
    ba_llm_settings_init(s);
    BA_TRY(ba_study_settings_set_path(&s->model, ba_cli_get(o, "model"), err));
    BA_TRY(ba_study_settings_set_path(&s->text, ba_cli_get(o, "text"), err));
    if (ba_cli_has(o, "imatrix"))
        BA_TRY(ba_study_settings_set_path(&s->imatrix, ba_cli_get(o, "imatrix"), err));
    for (size_t i = 0; i < ba_cli_count(o, "budget"); i++) {
        const char *b = ba_cli_value(o, "budget", i);
        ba_status st = ba_budget_set_add(&s->budgets, b, err);
        if (st == BA_OK && s->budgets.items[s->budgets.n - 1].kind != BA_BUDGET_AVG_BITS &&
            s->budgets.items[s->budgets.n - 1].kind != BA_BUDGET_MEMORY)
            st = ba_error_set(err, BA_ERR_INPUT, "an LLM search takes avg-bits and memory budgets");
        if (st != BA_OK) {
            ba_error_prefix(err, "--budget %s", b);
            return st;
        }
    }
    if (ba_cli_has(o, "types")) {
        ba_status st = ba_llm_settings_set_types(s, ba_cli_get(o, "types"), err);
        if (st != BA_OK) {
            ba_error_prefix(err, "--types");
            return st;
        }
    }
    snprintf(s->method, sizeof s->method, "%s", ba_cli_get_or(o, "method", "ilp+evo"));
    if (ba_cli_has(o, "mix-seed")) {
        ba_status st = ba_llm_settings_set_mix_seed(s, ba_cli_get(o, "mix-seed"), err);
        if (st != BA_OK) {
            ba_error_prefix(err, "--mix-seed");
            return st;
        }
    }
    if (!strcmp(s->method, "nsga2"))
        return ba_error_set(err, BA_ERR_INPUT, "--method nsga2: not available for an LLM search");
    s->seed = ba_cli_get_u64(o, "seed", 0);
    s->generations = (int)ba_cli_get_int(o, "generations", BA_LLM_DEFAULT_GENERATIONS);
    s->offspring = (int)ba_cli_get_int(o, "offspring", BA_LLM_DEFAULT_OFFSPRING);
    s->chunk = (int)ba_cli_get_int(o, "chunk", BA_LLM_DEFAULT_CHUNK);
    s->threads = (int)ba_cli_get_int(o, "threads", 1);
    s->low_fidelity_tokens =
        (int)ba_cli_get_int(o, "low-fidelity-tokens", BA_LLM_DEFAULT_LOW_FIDELITY_TOKENS);
    if (s->low_fidelity_tokens < 1)
        return ba_error_set(err, BA_ERR_INPUT, "--low-fidelity-tokens: must be at least 1");
    if (s->offspring < 1) return ba_error_set(err, BA_ERR_INPUT, "--offspring: must be at least 1");
    if (s->chunk < 2) return ba_error_set(err, BA_ERR_INPUT, "--chunk: must be at least 2 tokens");
    if (s->threads < 1) return ba_error_set(err, BA_ERR_INPUT, "--threads: must be at least 1");
    return BA_OK;
}

int ba_llm_search_report(const ba_cli_opts *o, const ba_llm_study_result_t *r) {
    if (!strcmp(ba_cli_get_or(o, "format", "table"), "json")) {
        json_t *j = json_object(), *t = json_object();
        json_object_set_new(j, "study", json_string(r->study));
        json_object_set_new(j, "trial", json_integer(r->trial));
        json_object_set_new(j, "trials", json_integer(r->ntrials));
        json_object_set_new(j, "evaluations", json_integer(r->nevals));
        json_object_set_new(j, "kl", ba_json_real_or_null(r->kl));
        json_object_set_new(j, "agreement", ba_json_real_or_null(r->agreement));
        json_object_set_new(j, "avg_bits", json_real(r->avg_bits));
        json_object_set_new(j, "bytes", json_integer((json_int_t)r->bytes));
        json_object_set_new(j, "predicted", ba_json_real_or_null(r->predicted));
        json_object_set_new(j, "seconds", json_real(r->seconds));
        json_t *seeds = json_array();
        for (int i = 0; i < r->nseeds; i++)
            json_array_append_new(seeds, json_pack("{s:s, s:I, s:o, s:o}", "name", r->seeds[i].name, "trial",
                                                   (json_int_t)r->seeds[i].trial, "kl",
                                                   ba_json_real_or_null(r->seeds[i].kl), "bytes",
                                                   ba_json_real_or_null(r->seeds[i].bytes)));
        json_object_set_new(j, "seeds", seeds);
        for (int i = 0; i < r->ntensors; i++)
            json_object_set_new(t, r->names[i], json_string(ba_ggml_type_by_id(r->types[i])->name));
        json_object_set_new(j, "types", t);
        int rc = ba_json_print(stdout, j);
        json_decref(j);
        return rc == 0 ? BA_EXIT_OK : BA_EXIT_RUNTIME;
    }
    char bytes[64];
    ba_fmt_bytes(r->bytes, bytes, sizeof bytes);
    printf("study      %s%s\n", r->study, r->was_complete ? " (already complete)" : "");
    printf("best       trial %" PRId64 " of %" PRId64 " (%" PRId64 " measurements by this run, %.1f s)\n",
           r->trial, r->ntrials, r->nevals, r->seconds);
    printf("kl         %.6g  (top-1 agreement %.4f)\n", r->kl, r->agreement);
    printf("size       %.4f bits per quantizable weight, %s in all tensors\n", r->avg_bits, bytes);
    for (int i = 0; i < r->nseeds; i++) {
        ba_fmt_bytes(r->seeds[i].bytes, bytes, sizeof bytes);
        printf("%-10s %s%s (trial %" PRId64 "): kl %.6g, %s\n", i ? "" : "seeds", i ? "llama.cpp " : "",
               i ? r->seeds[i].name : "ILP plan", r->seeds[i].trial, r->seeds[i].kl, bytes);
    }
    putchar('\n');
    static const char *const hdr[] = {"tensor", "type"};
    ba_table_t *tab = ba_table_new(2, hdr, NULL);
    for (int i = 0; tab && i < r->ntensors; i++)
        ba_table_addf(tab, "%s\t%s", r->names[i], ba_ggml_type_by_id(r->types[i])->name);
    if (tab) ba_table_print(tab, stdout);
    ba_table_free(tab);
    return BA_EXIT_OK;
}

/* Ends the progress line of ui, then prints err (st failed) or reports r; returns the exit code. */
static int llm_finish(const ba_cli_opts *o, ba_status st, const ba_error *err, ba_search_ui_t *ui,
                      const ba_llm_study_result_t *r) {
    ba_progress_end(&ui->bar);
    if (st != BA_OK) {
        ba_cli_error("%s", err->msg);
        return ba_status_exit_code(st);
    }
    return ba_llm_search_report(o, r);
}

int ba_cmd_llm_search(const ba_cli_opts *o) {
    ba_error err = {0};
    ba_llm_settings_t s;
    ba_llama_t *ll = NULL;
    ba_db_t *db = NULL;
    ba_status st = settings_from_opts(o, &s, &err);
    if (st == BA_OK) st = ba_cli_llama_open(&ll, &err);
    const char *dbpath = ba_cli_db_path(o);
    if (st == BA_OK) st = ba_db_open(dbpath, BA_DB_OPEN_CREATE, &db, &err);
    char name[256];
    if (ba_cli_has(o, "study"))
        snprintf(name, sizeof name, "%s", ba_cli_get(o, "study"));
    else {
        ba_study_name(s.model ? s.model : "model", name, sizeof name);
        if (st == BA_OK && ba_cli_verbosity(o) >= 0)
            fprintf(stderr, "bitalloc: study '%s' (in %s)\n", name, dbpath);
    }
    ba_llm_study_result_t r = {0};
    ba_search_ui_t ui = {.quiet = ba_cli_verbosity(o) < 0};
    ba_study_callbacks_t cb = {ba_search_ui_progress, &ui, ba_search_ui_warning};
    if (st == BA_OK) st = ba_llm_study_search(db, ll, name, &s, &cb, &r, &err);
    int rc = llm_finish(o, st, &err, &ui, &r);
    ba_llm_study_result_free(&r);
    ba_db_close(db);
    ba_llm_settings_free(&s);
    return rc;
}

int ba_cmd_llm_resume(const ba_cli_opts *o, ba_db_t *db) {
    ba_error err = {0};
    ba_llama_t *ll = NULL;
    ba_status st = ba_cli_llama_open(&ll, &err);
    ba_llm_study_result_t r = {0};
    ba_search_ui_t ui = {.quiet = ba_cli_verbosity(o) < 0};
    ba_study_callbacks_t cb = {ba_search_ui_progress, &ui, ba_search_ui_warning};
    if (st == BA_OK) st = ba_llm_study_resume(db, ll, ba_cli_get(o, "study"), &cb, &r, &err);
    int rc = llm_finish(o, st, &err, &ui, &r);
    ba_llm_study_result_free(&r);
    return rc;
}

static int64_t trial_opt(const ba_cli_opts *o) {
    const char *t = ba_cli_get_or(o, "trial", "best");
    return strcmp(t, "best") ? strtoll(t, NULL, 10) : 0;
}

static void free_names(char **names, int n, int *types) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(types);
}

int ba_cmd_llm_export(const ba_cli_opts *o, ba_db_t *db) {
    ba_error err = {0};
    const char *study = ba_cli_get(o, "study"), *out = ba_cli_get(o, "output");
    const char *fmt = ba_cli_get(o, "format");
    ba_llm_settings_t s;
    char **names = NULL, *text = NULL, *cmd = NULL;
    int *types = NULL, n = 0;
    int64_t number = 0;
    ba_status st =
        strcmp(fmt, "llama")
            ? ba_error_set(&err, BA_ERR_INPUT, "--format %s: study '%s' is an LLM study; it exports as llama",
                           fmt, study)
            : BA_OK;
    if (st == BA_OK) st = ba_llm_study_trial(db, study, trial_opt(o), &s, &number, &names, &types, &n, &err);
    int have_s = st == BA_OK;
    if (st == BA_OK) {
        ba_out_input_t in[3] = {{s.model, "model"}, {s.text, "calibration text"}, {s.imatrix, "imatrix"}};
        st = ba_cli_check_output(o, "--output", out, NULL, in, 3, &err);
    }
    if (st == BA_OK) st = ba_llm_tensor_type_text((const char *const *)names, types, n, &text, &err);
    if (st == BA_OK) st = ba_out_write(out, text, strlen(text), &err);
    char qout[4200];
    if (st == BA_OK) {
        const char *base = strrchr(s.model, '/');
        base = base ? base + 1 : s.model;
        size_t stem = strcspn(base, ".");
        snprintf(qout, sizeof qout, "%.*s-%s-trial%" PRId64 ".gguf", (int)stem, base, study, number);
        st = ba_llm_quantize_command(&s, out, qout, &cmd, &err);
    }
    int rc = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        rc = ba_status_exit_code(st);
    } else {
        if (ba_cli_verbosity(o) >= 0)
            fprintf(stderr, "bitalloc: trial %" PRId64 " of study '%s': %d tensor types in %s; apply with:\n",
                    number, study, n, out);
        fputs(cmd, stdout);
        if (ba_cli_verbosity(o) >= 0 && !ba_hf_is_gguf(s.model))
            fprintf(stderr,
                    "bitalloc: note: %s is a safetensors checkpoint; llama-quantize needs it as a GGUF "
                    "(llama.cpp's convert_hf_to_gguf.py), or run `bitalloc llm-quantize --study %s`\n",
                    s.model, study);
    }
    free(text);
    free(cmd);
    free_names(names, n, types);
    if (have_s) ba_llm_settings_free(&s);
    return rc;
}

int ba_cmd_llm_quantize(const ba_cli_opts *o) {
    ba_error err = {0};
    const char *study = ba_cli_get(o, "study"), *out = ba_cli_get(o, "output");
    ba_db_t *db = NULL;
    ba_llama_t *ll = NULL;
    ba_llm_settings_t s;
    ba_imatrix_t *im = NULL;
    ba_gguf_t *g = NULL;
    char **names = NULL, **pats = NULL;
    int *types = NULL, n = 0, have_s = 0;
    int64_t number = 0;
    ba_status st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_READONLY, &db, &err);
    if (st == BA_OK) st = ba_llm_study_trial(db, study, trial_opt(o), &s, &number, &names, &types, &n, &err);
    have_s = st == BA_OK;
    if (st == BA_OK) {
        ba_out_input_t in[3] = {{s.model, "model"}, {s.text, "calibration text"}, {s.imatrix, "imatrix"}};
        st = ba_cli_check_output(o, "--output", out, NULL, in, 3, &err);
    }
    if (st == BA_OK && s.imatrix) st = ba_imatrix_open(s.imatrix, &im, &err);
    if (st == BA_OK) st = ba_llm_gguf_open_any(s.model, &g, &err); /* safetensors: a temporary GGUF */
    if (st == BA_OK) st = ba_cli_llama_open(&ll, &err);
    if (st == BA_OK && !(pats = ba_calloc((size_t)n + 1, sizeof *pats, &err))) st = BA_ERR_NOMEM;
    for (int i = 0; st == BA_OK && i < n; i++) {
        size_t len = 0;
        FILE *fp = open_memstream(&pats[i], &len);
        if (!fp) {
            st = ba_error_set(&err, BA_ERR_NOMEM, "out of memory");
            break;
        }
        ba_export_llama_pattern(fp, names[i]);
        fclose(fp);
    }
    if (st == BA_OK)
        st = ba_llama_quantize(ll, g->path, out, ba_ggml_type_by_name("q8_0")->id, (const char *const *)pats,
                               types, n, (int)ba_cli_get_int(o, "threads", 1), im, &err);
    int rc = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        rc = ba_status_exit_code(st);
    } else if (ba_cli_verbosity(o) >= 0)
        fprintf(stderr, "bitalloc: wrote %s (trial %" PRId64 " of study '%s', %d tensors set)\n", out, number,
                study, n);
    for (int i = 0; pats && i < n; i++) free(pats[i]);
    free(pats);
    free_names(names, n, types);
    ba_imatrix_free(im);
    ba_gguf_free(g);
    if (have_s) ba_llm_settings_free(&s);
    ba_db_close(db);
    return rc;
}
