/* `bitalloc export`: one trial of a study (the best by default) as a file other
 * tools read (see docs/export.md). The study's model is re-read and must have the
 * sha256 stored with the study; the output goes through core/outfile.h (a
 * temporary file beside PATH, renamed), so a failure leaves no file, and a path
 * that is the study's database, model or data is refused. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/guard.h"
#include "core/outfile.h"
#include "quant/apply.h"
#include "quant/export.h"
#include "quant/namemap.h"
#include "study/llm_study.h"

typedef struct {
    ba_db_t *db;
    ba_study_info_t info;
    ba_trial_t trial;
    char **names;
    int nnames;
    ba_model_t *model;
    ba_plan_t *plan;
    int nwarnings; /* warnings printed (--strict turns any into exit 2) */
} export_ctx_t;

static void export_warn(void *ctx, const char *msg) {
    export_ctx_t *c = ctx;
    c->nwarnings++;
    fprintf(stderr, "bitalloc: warning: %s\n", msg);
}

static void ctx_free(export_ctx_t *c) {
    for (int i = 0; i < c->nnames; i++) free(c->names[i]);
    free(c->names);
    ba_plan_free(c->plan);
    ba_model_free(c->model);
    ba_trial_free(&c->trial);
    ba_db_study_info_free(&c->info);
    ba_db_close(c->db);
}

/* --trial N, or best (the default): the complete trial with the lowest kl
 * (never a pruned or failed one). */
static ba_status pick_trial(export_ctx_t *c, const char *which, ba_error *err) {
    if (which && strcmp(which, "best") != 0) {
        char *end;
        long long num = strtoll(which, &end, 10);
        BA_TRY(ba_db_trial_get(c->db, c->info.id, num, &c->trial, err));
        if (!strcmp(c->trial.state, "failed")) /* its output was not finite (SPEC §8): no plan */
            return ba_error_set(
                err, BA_ERR_INPUT,
                "--trial %lld: the trial failed (its quantized output is not finite); a failed "
                "trial is never exported",
                num);
        if (!strcmp(c->trial.state, "pruned")) /* stopped early at low fidelity: its figures are partial */
            export_warn(c, "the trial was pruned (stopped early on part of the data): its metrics are "
                           "low-fidelity estimates, not a finished evaluation; --trial best never picks one");
        return BA_OK;
    }
    ba_trial_query_t q = {.best = 1};
    ba_trial_t *t;
    int n;
    BA_TRY(ba_db_trials_query(c->db, c->info.id, &q, &t, &n, err));
    if (n == 0) {
        ba_db_trials_free(t, n);
        return ba_error_set(err, BA_ERR_INPUT, "--trial: study '%s' has no complete trial yet", c->info.name);
    }
    c->trial = t[0];
    t[0].w_bits = t[0].a_bits = NULL; /* moved into c->trial */
    ba_db_trials_free(t, n);
    return BA_OK;
}

/* The study's model, refused when the file changed since the study was made. */
static ba_status load_model(export_ctx_t *c, const ba_study_settings_t *set, ba_error *err) {
    const char *path = c->info.model_path;
    char sha[65];
    if (ba_sha256_file(path, sha, err) != BA_OK) {
        char why[BA_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        return ba_error_set(err, BA_ERR_INPUT, "%s: cannot read the model of study '%s' (%s)", path,
                            c->info.name, why);
    }
    if (strcmp(sha, c->info.model_sha256) != 0)
        return ba_error_set(
            err, BA_ERR_INPUT,
            "%s: the model file changed since study '%s' was made (sha256 %.12s…, study has %.12s…)", path,
            c->info.name, sha, c->info.model_sha256);
    ba_load_opts_t lo = {.include_embeddings = set->include_embeddings};
    BA_TRY(ba_model_load(path, &lo, &c->model, err));
    return ba_study_export_resolve_costs(c->model, set, err);
}

/* The quantized ONNX model. Activation ranges are calibrated again on the
 * study's data (checked against its stored digest) only for QDQ with
 * --act-bits: a fakequant file carries weights only. */
static ba_status write_onnx(export_ctx_t *c, const ba_study_settings_t *set, int qdq,
                            ba_qdq_profile_t profile, const char *out, ba_error *err) {
    int *bits = ba_malloc((c->model->nlayers > 0 ? (size_t)c->model->nlayers : 1) * sizeof *bits, err);
    if (!bits) return BA_ERR_NOMEM;
    ba_status st = ba_plan_bits(c->plan, c->model, bits, err);
    ba_act_range_t *ranges = NULL;
    if (st == BA_OK && qdq && set->quant.act_bits > 0)
        st = ba_study_export_calibrate(c->model, set, c->info.data_sha256, &ranges, err);
    if (st == BA_OK)
        st = ba_quant_write_onnx_profile(c->model, bits, &set->quant, ranges, qdq, profile, out, err);
    free(ranges);
    free(bits);
    return st;
}

/* A text format: its layers addressed by the consumer's names (--name-map,
 * else the exporter's conventions); nothing is written under --strict when a
 * layer could not be named or applied. */
static ba_status write_text(export_ctx_t *c, const ba_cli_opts *o, ba_export_fmt_t fmt, const char *out,
                            ba_error *err) {
    ba_namemap_t *map = NULL;
    const char *mp = ba_cli_get(o, "name-map");
    if (mp) BA_TRY(ba_namemap_load(mp, &map, err));
    ba_export_opts_t eo = {.names = map, .warn = export_warn, .warn_ctx = c};
    ba_export_report_t rep;
    char *text = NULL;
    ba_status st = ba_export_text_opts(c->plan, c->model, fmt, &eo, &rep, &text, err);
    ba_namemap_free(map);
    if (st == BA_OK && fmt != BA_EXPORT_PLAN && fmt != BA_EXPORT_CSV && ba_cli_verbosity(o) >= 0)
        fprintf(stderr, "bitalloc: %s: %d of %d layers named for the consumer\n", ba_cli_get(o, "format"),
                rep.named, rep.nlayers);
    if (st == BA_OK && fmt == BA_EXPORT_LLAMA && ba_cli_verbosity(o) >= 0)
        fprintf(stderr,
                "bitalloc: llama: %.4g bits per weight as planned, %.4g as llama-quantize stores them\n",
                rep.nominal_bits, rep.ggml_bits);
    if (st == BA_OK && c->nwarnings && ba_cli_has(o, "strict"))
        st = ba_error_set(err, BA_ERR_INPUT, "--strict: %d warning(s) above; %s not written", c->nwarnings,
                          out);
    if (st == BA_OK) st = ba_out_write(out, text, strlen(text), err);
    free(text);
    return st;
}

int ba_cmd_export(const ba_cli_opts *o) {
    const char *fmt_name = ba_cli_get(o, "format");
    const char *out = ba_cli_get(o, "output");
    ba_error err;
    ba_error_clear(&err);
    export_ctx_t c;
    memset(&c, 0, sizeof c);
    ba_study_settings_t set;
    ba_study_settings_init(&set);
    /* onnx-fakequant / onnx-qdq go through quant/apply.h; the others are text formats. */
    int onnx = strcmp(fmt_name, "onnx-fakequant") == 0 ? 1 : strcmp(fmt_name, "onnx-qdq") == 0 ? 2 : 0;
    ba_export_fmt_t fmt = BA_EXPORT_PLAN;
    ba_status st = onnx ? BA_OK : ba_export_format_parse(fmt_name, &fmt, &err);
    if (st == BA_OK) st = ba_db_open(ba_cli_db_path(o), BA_DB_OPEN_READONLY, &c.db, &err);
    if (st == BA_OK) st = ba_db_study_get(c.db, ba_cli_get(o, "study"), &c.info, &err);
    if (st == BA_OK && ba_llm_settings_is_llm(c.info.settings)) {
        /* An LLM study: its tensors' ggml types for llama-quantize. */
        int code = ba_cmd_llm_export(o, c.db);
        ba_study_settings_free(&set);
        ctx_free(&c);
        return code;
    }
    if (st == BA_OK) st = pick_trial(&c, ba_cli_get(o, "trial"), &err);
    if (st == BA_OK) st = ba_db_layer_names(c.db, c.info.id, &c.names, &c.nnames, &err);
    if (st == BA_OK) {
        ba_study_settings_free(&set);
        st = ba_study_settings_from_json(c.info.settings, &set, &err);
        if (st != BA_OK) ba_error_prefix(&err, "study '%s'", c.info.name);
    }
    /* Replacing the study's own files would lose the study (or the model it checks). */
    if (st == BA_OK) {
        ba_out_input_t in[2 * BA_STUDY_MAX_DATA + 1] = {{c.info.model_path, "study's model"}};
        int nin = 1;
        ba_cli_data_inputs((const char *const *)set.data, set.ndata, "study's data file", in, &nin,
                           2 * BA_STUDY_MAX_DATA + 1);
        st = ba_cli_check_output(o, "--output", out, NULL, in, nin, &err);
    }
    if (st == BA_OK) st = load_model(&c, &set, &err);
    if (st == BA_OK)
        st = ba_study_trial_plan(c.model, c.info.name, c.info.metric, (const char *const *)c.names, c.nnames,
                                 &c.trial, &set, &c.plan, &err);
    if (st == BA_OK) {
        /* The evolution's final choice, when this trial is it: what decided (docs/search.md). */
        char *rec = NULL;
        st = ba_db_trial_chosen(c.db, c.info.id, c.trial.number, &rec, &err);
        if (st == BA_OK && rec) st = ba_plan_set_choice(c.plan, rec, &err);
        free(rec);
    }
    const char *prof = ba_cli_get_or(o, "qdq-profile", "ort");
    ba_qdq_profile_t profile = strcmp(prof, "tensorrt") == 0 ? BA_QDQ_TENSORRT : BA_QDQ_ORT;
    int named_fmt = !onnx && (fmt == BA_EXPORT_HAWQ || fmt == BA_EXPORT_MODELOPT ||
                              fmt == BA_EXPORT_MODELOPT_PY || fmt == BA_EXPORT_LLAMA);
    if (st == BA_OK && ba_cli_has(o, "name-map") && !named_fmt)
        st = ba_error_set(&err, BA_ERR_INPUT,
                          "--name-map: applies to --format hawq, modelopt, modelopt-py and llama");
    if (st == BA_OK && ba_cli_has(o, "qdq-profile") && onnx != 2)
        st = ba_error_set(&err, BA_ERR_INPUT, "--qdq-profile: applies to --format onnx-qdq only");
    if (st == BA_OK && !onnx) st = write_text(&c, o, fmt, out, &err);
    if (st == BA_OK && onnx && c.nwarnings && ba_cli_has(o, "strict"))
        st = ba_error_set(&err, BA_ERR_INPUT, "--strict: %d warning(s) above; %s not written", c.nwarnings,
                          out);
    if (st == BA_OK && onnx) st = write_onnx(&c, &set, onnx == 2, profile, out, &err);
    int code = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        code = ba_status_exit_code(st);
    } else if (ba_cli_verbosity(o) >= 0) {
        fprintf(stderr, "bitalloc: wrote %s (%s, trial %lld of study '%s')\n", out, fmt_name,
                (long long)c.trial.number, c.info.name);
    }
    ba_study_settings_free(&set);
    ctx_free(&c);
    return code;
}
