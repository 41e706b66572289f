/* `bitalloc quantize`: see docs/quantize.md. Applies a plan (checked against
 * the model: layers and sha256) and writes a fake-quantized or QDQ ONNX file
 * through ba_quant_write_onnx; activation ranges (plan act_bits, QDQ only)
 * are calibrated on --data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/guard.h"

int ba_cmd_quantize(const ba_cli_opts *o) {
    ba_error err;
    ba_error_clear(&err);
    ba_model_t *m = NULL;
    ba_plan_t *plan = NULL;
    ba_dataset_t *ds = NULL;
    ba_evaluator_t *ev = NULL;
    ba_act_range_t *ranges = NULL;
    int *bits = NULL;
    int qdq = strcmp(ba_cli_get_or(o, "format", "fakequant"), "qdq") == 0;
    const char *out = ba_cli_get(o, "output");
    ba_status st = ba_cli_check_output(o, "--output", out, NULL, NULL, 0, &err);
    if (st == BA_OK) st = ba_model_load(ba_cli_get(o, "model"), NULL, &m, &err);
    if (st == BA_OK) st = ba_plan_read(ba_cli_get(o, "plan"), &plan, &err);
    if (st == BA_OK) st = ba_plan_validate(plan, m, 1, &err);
    int differed = 0;
    char why[BA_ERROR_MSG_MAX];
    if (st == BA_OK) st = ba_plan_check_totals(plan, m, &differed, why, sizeof why, &err);
    if (st == BA_OK && differed) fprintf(stderr, "bitalloc: warning: %s; using the recomputed totals\n", why);
    if (st == BA_OK) {
        bits = ba_calloc((size_t)m->nlayers + 1, sizeof(int), &err);
        st = bits ? ba_plan_bits(plan, m, bits, &err) : BA_ERR_NOMEM;
    }
    int act_bits = st == BA_OK ? plan->quantizer.act_bits : 0;
    int acts = act_bits > 0 && act_bits != 32;
    if (st == BA_OK && acts && !qdq && ba_cli_verbosity(o) >= 0)
        fprintf(stderr,
                "bitalloc: note: the plan quantizes activations to %d bits; the fakequant format keeps "
                "them float (use --format qdq)\n",
                act_bits);
    if (st == BA_OK && acts && qdq) {
        const ba_cli_entry *d = ba_cli_find(o, "data");
        if (!d || d->n == 0) {
            st = ba_error_set(
                &err, BA_ERR_INPUT,
                "--data: the plan quantizes activations (act_bits %d); QDQ needs calibration data for "
                "their ranges",
                act_bits);
        } else {
            const ba_cli_entry *ax = ba_cli_find(o, "sample-axis");
            st = ba_eval_data_load(m, (const char *const *)d->vals, (int)d->n,
                                   ax ? (const char *const *)ax->vals : NULL, ax ? (int)ax->n : 0, &ds, &err);
            if (st == BA_OK) st = ba_evaluator_new(m, ds, NULL, &ev, &err);
            if (st == BA_OK) {
                ranges = ba_calloc((size_t)m->nvalues + 1, sizeof *ranges, &err);
                st = ranges ? ba_study_calibrate_acts(ev, m, ranges, &err) : BA_ERR_NOMEM;
            }
        }
    }
    if (st == BA_OK) st = ba_quant_write_onnx(m, bits, &plan->quantizer, qdq ? ranges : NULL, qdq, out, &err);
    if (st == BA_OK && ba_cli_verbosity(o) >= 0)
        fprintf(stderr, "bitalloc: wrote %s (%s, %d layers)\n", out, qdq ? "qdq" : "fakequant", m->nlayers);
    int rc = BA_EXIT_OK;
    if (st != BA_OK) {
        ba_cli_error("%s", err.msg);
        rc = ba_status_exit_code(st);
    }
    free(ranges);
    ba_evaluator_free(ev);
    ba_dataset_free(ds);
    free(bits);
    ba_plan_free(plan);
    ba_model_free(m);
    return rc;
}
