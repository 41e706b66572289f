/* quant/plan.c: bitalloc.plan/1 round trips in SPEC key order, totals from
 * the cost module, and one clear error per way a plan can be wrong. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant/plan.h"
#include "tests/quant_model.h"

static char tmpdir[64];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ba_plan_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(plan, .init = make_tmpdir, .fini = rm_tmpdir);

static const char *tmp_path(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

/* Writes text to a file in tmpdir and reads it as a plan. */
static ba_status read_text(const char *text, ba_plan_t **out, ba_error *err) {
    const char *path = tmp_path("in.json");
    ba_error werr;
    cr_assert_eq(ba_out_write(path, text, strlen(text), &werr), BA_OK);
    return ba_plan_read(path, out, err);
}

/* A valid plan for the test model, as text, with one substitution applied. */
static char *plan_text_with(const char *from, const char *to) {
    ba_model_t *m = qm_new();
    int bits[QM_NLAYERS] = {4, 8, 2};
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(ba_plan_from_bits(m, bits, NULL, &p, &err), BA_OK);
    char *text;
    cr_assert_eq(ba_plan_to_json(p, &text, &err), BA_OK);
    ba_plan_free(p);
    qm_free(m);
    if (!from) return text;
    char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not in %s", from, text);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    sprintf(out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    free(text);
    return out;
}

static void expect_read_error(const char *from, const char *to, const char *needle) {
    char *text = plan_text_with(from, to);
    ba_plan_t *p = NULL;
    ba_error err;
    cr_assert_eq(read_text(text, &p, &err), BA_ERR_INPUT, "%s -> %s should fail", from, to);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, "in.json"), "message names the file: %s", err.msg);
    cr_assert(strstr(err.msg, needle), "expected '%s' in: %s", needle, err.msg);
    free(text);
}

Test(plan, from_bits_fills_layers_and_totals_through_cost) {
    ba_model_t *m = qm_new();
    int bits[QM_NLAYERS] = {4, 8, 2};
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(ba_plan_from_bits(m, bits, NULL, &p, &err), BA_OK);
    cr_assert_eq(p->nlayers, 3);
    cr_assert_str_eq(p->layers[1].name, "fc.weight");
    cr_assert_str_eq(p->layers[1].node, "Gemm_1");
    cr_assert_str_eq(p->layers[1].op, "Gemm");
    cr_assert_eq(p->layers[1].params, 210);
    cr_assert_eq(p->layers[0].macs, 221184);
    cr_assert_eq(p->layers[2].w_bits, 2);
    cr_assert_eq(p->layers[2].a_bits, 0);
    cr_assert_str_eq(p->sha256, QM_SHA);
    cr_assert_str_eq(p->model_path, "net.onnx");
    cr_assert_eq(p->totals.memory_bytes, 544); /* see test_cost.c */
    cr_assert_float_eq(p->totals.avg_bits, 2784.0 / 546.0, 1e-12);
    cr_assert_float_eq(p->totals.bops, 28403712.0, 0);
    cr_assert(isnan(p->totals.latency_us));
    cr_assert_null(p->metrics);
    cr_assert_null(p->search);
    cr_assert_eq(ba_plan_validate(p, m, 1, &err), BA_OK, "%s", err.msg);
    ba_plan_free(p);
    bits[0] = 9;
    cr_assert_eq(ba_plan_from_bits(m, bits, NULL, &p, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "conv1.weight"), "%s", err.msg);
    qm_free(m);
}

Test(plan, writes_spec_key_order_one_layer_per_line) {
    char *text = plan_text_with(NULL, NULL);
    const char *keys[] = {"\"format\"", "\"model\"",       "\"path\"",    "\"sha256\"",   "\"quantizer\"",
                          "\"scheme\"", "\"granularity\"", "\"clip\"",    "\"act_bits\"", "\"layers\"",
                          "\"name\"",   "\"node\"",        "\"op\"",      "\"params\"",   "\"macs\"",
                          "\"w_bits\"", "\"a_bits\"",      "\"totals\"",  "\"avg_bits\"", "\"memory_bytes\"",
                          "\"bops\"",   "\"latency_us\"",  "\"metrics\"", "\"search\""};
    const char *prev = text;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *at = strstr(prev, keys[i]);
        cr_assert_not_null(at, "%s missing or out of order in\n%s", keys[i], text);
        prev = at;
    }
    cr_assert(strstr(text, "{\"format\": \"bitalloc.plan/1\",\n"), "%s", text);
    cr_assert(strstr(text,
                     "\n  {\"name\": \"fc.weight\", \"node\": \"Gemm_1\", \"op\": \"Gemm\", \"params\": 210, "
                     "\"macs\": 210, \"w_bits\": 8, \"a_bits\": null}"),
              "%s", text);
    cr_assert(strstr(text, "\"quantizer\": {\"scheme\": \"symmetric\", \"granularity\": \"per-channel\", "
                           "\"clip\": \"max\", \"act_bits\": null}"),
              "%s", text);
    cr_assert(strstr(text, "\"metrics\": null,\n \"search\": null}\n"), "%s", text);
    free(text);
}

Test(plan, round_trip_keeps_every_field) {
    ba_model_t *m = qm_new();
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    ba_error err;
    cr_assert_eq(ba_quant_cfg_parse_scheme("asymmetric", &cfg, &err), BA_OK);
    cr_assert_eq(ba_quant_cfg_parse_granularity("group:64", &cfg, &err), BA_OK);
    cr_assert_eq(ba_quant_cfg_parse_clip("mse", &cfg, &err), BA_OK);
    cfg.act_bits = 8;
    int bits[QM_NLAYERS] = {3, 16, 32};
    ba_plan_t *p, *q;
    cr_assert_eq(ba_plan_from_bits(m, bits, &cfg, &p, &err), BA_OK);
    p->totals.latency_us = 123.5;
    cr_assert_eq(ba_plan_set_metrics(p, 0.0021, 0.991, NAN, &err), BA_OK);
    const char *keys[] = {"avg-bits", "memory"};
    const double vals[] = {4.0, 1048576.0};
    cr_assert_eq(ba_plan_set_search(p, "s1", 17, "ilp+evo", 2, keys, vals, 0, &err), BA_OK);
    char path[256];
    snprintf(path, sizeof path, "%s", tmp_path("p.json"));
    cr_assert_eq(ba_plan_write(path, p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(access(tmp_path("p.json.tmp"), F_OK), -1, "no temp file left behind");
    cr_assert_eq(ba_plan_read(path, &q, &err), BA_OK, "%s", err.msg);
    cr_assert_str_eq(q->file, path);
    cr_assert_eq(q->quantizer.scheme, BA_SCHEME_ASYMMETRIC);
    cr_assert_eq(q->quantizer.granularity, BA_GRAN_GROUP);
    cr_assert_eq(q->quantizer.group, 64);
    cr_assert_eq(q->quantizer.clip, BA_CLIP_MSE);
    cr_assert_eq(q->quantizer.act_bits, 8);
    cr_assert_eq(q->nlayers, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(q->layers[i].name, p->layers[i].name);
        cr_assert_str_eq(q->layers[i].node, p->layers[i].node);
        cr_assert_str_eq(q->layers[i].op, p->layers[i].op);
        cr_assert_eq(q->layers[i].params, p->layers[i].params);
        cr_assert_eq(q->layers[i].macs, p->layers[i].macs);
        cr_assert_eq(q->layers[i].w_bits, bits[i]);
        cr_assert_eq(q->layers[i].a_bits, 8);
    }
    cr_assert_eq(q->totals.avg_bits, p->totals.avg_bits, "17 significant digits round-trip exactly");
    cr_assert_eq(q->totals.memory_bytes, p->totals.memory_bytes);
    cr_assert_eq(q->totals.bops, p->totals.bops);
    cr_assert_eq(q->totals.latency_us, 123.5);
    cr_assert_eq(q->metrics->kl, 0.0021);
    cr_assert_eq(q->metrics->agreement, 0.991);
    cr_assert(isnan(q->metrics->accuracy));
    cr_assert_str_eq(q->search->study, "s1");
    cr_assert_eq(q->search->trial, 17);
    cr_assert_str_eq(q->search->method, "ilp+evo");
    cr_assert_eq(q->search->nbudgets, 2);
    cr_assert_str_eq(q->search->budgets[1].key, "memory");
    cr_assert_eq(q->search->budgets[1].value, 1048576.0);
    cr_assert_eq(q->search->has_seed, 1);
    cr_assert_eq(q->search->seed, 0);
    /* Writing what was read gives the same bytes. */
    char *t1, *t2;
    cr_assert_eq(ba_plan_to_json(p, &t1, &err), BA_OK);
    cr_assert_eq(ba_plan_to_json(q, &t2, &err), BA_OK);
    cr_assert_str_eq(t1, t2);
    free(t1);
    free(t2);
    ba_plan_free(p);
    ba_plan_free(q);
    qm_free(m);
}

Test(plan, search_choice_round_trips_and_a_non_object_is_an_error) {
    ba_model_t *m = qm_new();
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    ba_error err;
    int bits[QM_NLAYERS] = {4, 8, 8};
    ba_plan_t *p, *q;
    cr_assert_eq(ba_plan_from_bits(m, bits, &cfg, &p, &err), BA_OK);
    cr_expect_neq(ba_plan_set_choice(p, "{}", &err), BA_OK, "needs the search section");
    const char *keys[] = {"avg-bits"};
    const double vals[] = {4.0};
    cr_assert_eq(ba_plan_set_search(p, "s1", 7, "ilp+evo", 1, keys, vals, 0, &err), BA_OK);
    const char *rec = "{\"rule\":\"significant\",\"default\":3,\"trial\":7,\"candidates\":[{\"trial\":7,"
                      "\"p\":0.0005}]}";
    cr_assert_eq(ba_plan_set_choice(p, rec, &err), BA_OK, "%s", err.msg);
    char path[256];
    snprintf(path, sizeof path, "%s", tmp_path("c.json"));
    cr_assert_eq(ba_plan_write(path, p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_plan_read(path, &q, &err), BA_OK, "%s", err.msg);
    cr_assert(q->search->choice);
    cr_expect(strstr(q->search->choice, "{\"rule\":\"significant\",\"default\":3,\"trial\":7,"), "%s",
              q->search->choice);
    char *t1, *t2;
    cr_assert_eq(ba_plan_to_json(p, &t1, &err), BA_OK);
    cr_assert_eq(ba_plan_to_json(q, &t2, &err), BA_OK);
    cr_expect_str_eq(t1, t2, "the same bytes");
    cr_expect(strstr(t1, "\"choice\": {\"rule\": \"significant\""), "%s", t1);
    /* A plan without it reads as before; a choice that is no object is refused, naming the field. */
    char *bad = strdup(t1);
    char *at = strstr(bad, "\"choice\": {");
    cr_assert(at);
    at[10] = '7', at[11] = '}';
    memset(at + 12, ' ', strlen(at + 12) - 2);
    FILE *f = fopen(path, "w");
    fputs(bad, f);
    fclose(f);
    ba_plan_t *r;
    cr_expect_neq(ba_plan_read(path, &r, &err), BA_OK);
    cr_expect(strstr(err.msg, "search.choice"), "%s", err.msg);
    free(bad);
    free(t1);
    free(t2);
    ba_plan_free(p);
    ba_plan_free(q);
    qm_free(m);
}

Test(plan, reads_the_spec_example) {
    const char *text =
        "{\"format\": \"bitalloc.plan/1\",\n"
        " \"model\": {\"path\": \"net.onnx\", \"sha256\": \"" QM_SHA "\"},\n"
        " \"quantizer\": {\"scheme\": \"symmetric\", \"granularity\": \"per-channel\", \"clip\": \"max\", "
        "\"act_bits\": null},\n"
        " \"layers\": [{\"name\": \"conv1.weight\", \"node\": \"Conv_0\", \"op\": \"Conv\", \"params\": 864, "
        "\"macs\": 110592,\n             \"w_bits\": 4, \"a_bits\": null}],\n"
        " \"totals\": {\"avg_bits\": 4.0, \"memory_bytes\": 12345, \"bops\": 1.2e9, \"latency_us\": null},\n"
        " \"metrics\": {\"kl\": 0.0021, \"agreement\": 0.991, \"accuracy\": null},\n"
        " \"search\": {\"study\": \"s\", \"trial\": 17, \"method\": \"ilp+evo\", \"budgets\": {\"avg-bits\": "
        "4}, "
        "\"seed\": 0}}\n";
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(read_text(text, &p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(p->layers[0].macs, 110592);
    cr_assert_eq(p->totals.bops, 1.2e9);
    cr_assert_eq(p->search->budgets[0].value, 4.0);
    ba_plan_free(p);
}

Test(plan, bad_json_and_wrong_types_name_the_field) {
    expect_read_error("\"search\": null}", "\"search\": null", "bad JSON");
    expect_read_error("\"w_bits\": 8", "\"w_bits\": \"8\"",
                      "layers[1] (fc.weight).w_bits: expected an integer");
    expect_read_error("\"w_bits\": 8", "\"w_bits\": 8.5", "w_bits: expected an integer");
    expect_read_error("\"params\": 210, ", "", "layers[1] (fc.weight).params: missing field");
    expect_read_error("\"name\": \"fc.weight\"", "\"name\": 3", "layers[1].name: expected a string");
    expect_read_error("\"format\": \"bitalloc.plan/1\"", "\"format\": \"bitalloc.plan/2\"", "format");
    expect_read_error("\"symmetric\"", "\"signed\"", "quantizer.scheme");
    expect_read_error("\"per-channel\"", "\"group:0\"", "quantizer.granularity");
    expect_read_error("\"clip\": \"max\"", "\"clip\": 1", "quantizer.clip: expected a string");
    expect_read_error("\"sha256\": \"", "\"sha256\": \"zz", "model.sha256");
    expect_read_error("\"totals\"", "\"total\"", "totals: missing field");
    expect_read_error("\"memory_bytes\": 544", "\"memory_bytes\": -1", "totals.memory_bytes");
    expect_read_error("\"act_bits\": null", "\"act_bits\": \"8\"", "quantizer.act_bits");
    expect_read_error("\"metrics\": null", "\"metrics\": [1]", "metrics: expected an object");
    expect_read_error("\"search\": null", "\"search\": {\"study\": 1}", "search.study");
    expect_read_error("\"layers\": [", "\"layers\": [3, ", "layers[0]: expected an object");
    expect_read_error("\"format\": \"bitalloc.plan/1\",",
                      "\"format\": \"bitalloc.plan/1\", \"format\": \"x\",", "bad JSON");
}

Test(plan, unreadable_or_non_object_files_are_errors) {
    ba_plan_t *p = NULL;
    ba_error err;
    cr_assert_neq(ba_plan_read(tmp_path("missing.json"), &p, &err), BA_OK);
    cr_assert(strstr(err.msg, "missing.json"), "%s", err.msg);
    cr_assert_eq(read_text("[1, 2]", &p, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "expected a JSON object"), "%s", err.msg);
    cr_assert_eq(read_text("", &p, &err), BA_ERR_INPUT);
    cr_assert_eq(read_text("{\"format\": \"bitalloc.plan/1\", \"model\": {", &p, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "line"), "%s", err.msg);
    cr_assert_null(p);
}

/* Reads a plan text (valid JSON) and validates it against the test model. */
static void expect_invalid(const char *from, const char *to, int check_sha, const char *needle) {
    char *text = plan_text_with(from, to);
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(read_text(text, &p, &err), BA_OK, "%s", err.msg);
    ba_model_t *m = qm_new();
    cr_assert_eq(ba_plan_validate(p, m, check_sha, &err), BA_ERR_INPUT, "%s -> %s should be invalid", from,
                 to);
    cr_assert(strstr(err.msg, "in.json"), "message names the plan file: %s", err.msg);
    cr_assert(strstr(err.msg, needle), "expected '%s' in: %s", needle, err.msg);
    qm_free(m);
    ba_plan_free(p);
    free(text);
}

Test(plan, validate_rejects_unknown_missing_and_duplicate_layers) {
    expect_invalid("\"name\": \"fc.weight\"", "\"name\": \"fc2.weight\"", 1,
                   "'fc2.weight' is not a quantizable layer");
    expect_invalid("\"name\": \"fc.weight\"", "\"name\": \"conv1.weight\"", 1,
                   "'conv1.weight' appears more than once");
    /* Drop the last layer line entirely. */
    char *text = plan_text_with(NULL, NULL);
    char *last = strstr(text, ",\n  {\"name\": \"mm.weight\"");
    char *end = strstr(last, "}");
    memmove(last, end + 1, strlen(end + 1) + 1);
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(read_text(text, &p, &err), BA_OK, "%s", err.msg);
    ba_model_t *m = qm_new();
    cr_assert_eq(ba_plan_validate(p, m, 1, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "'mm.weight' of net.onnx is missing"), "%s", err.msg);
    int bits[QM_NLAYERS];
    cr_assert_eq(ba_plan_bits(p, m, bits, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "mm.weight"), "%s", err.msg);
    qm_free(m);
    ba_plan_free(p);
    free(text);
}

Test(plan, validate_rejects_widths_params_and_sha) {
    const char *bad_bits[] = {"\"w_bits\": 1",  "\"w_bits\": 9", "\"w_bits\": 12",
                              "\"w_bits\": 64", "\"w_bits\": 0", "\"w_bits\": -4"};
    for (size_t i = 0; i < sizeof bad_bits / sizeof *bad_bits; i++)
        expect_invalid("\"w_bits\": 8", bad_bits[i], 1, "layer 'fc.weight': w_bits");
    expect_invalid("\"macs\": 210, \"w_bits\": 8, \"a_bits\": null",
                   "\"macs\": 210, \"w_bits\": 8, \"a_bits\": 7000", 1, "a_bits 7000");
    expect_invalid("\"act_bits\": null", "\"act_bits\": 12", 1, "quantizer.act_bits");
    expect_invalid("\"params\": 210", "\"params\": 211", 1, "params 211, but net.onnx has 210");
    expect_invalid("\"sha256\": \"0", "\"sha256\": \"f", 1, "does not match net.onnx");
    /* Without the sha check the same plan passes. */
    char *text = plan_text_with("\"sha256\": \"0", "\"sha256\": \"f");
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(read_text(text, &p, &err), BA_OK);
    ba_model_t *m = qm_new();
    cr_assert_eq(ba_plan_validate(p, m, 0, &err), BA_OK, "%s", err.msg);
    qm_free(m);
    ba_plan_free(p);
    free(text);
}

Test(plan, bits_follow_model_order_whatever_the_plan_order) {
    ba_model_t *m = qm_new();
    int bits[QM_NLAYERS] = {5, 6, 7};
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(ba_plan_from_bits(m, bits, NULL, &p, &err), BA_OK);
    ba_plan_layer_t t = p->layers[0];
    p->layers[0] = p->layers[2];
    p->layers[2] = t;
    cr_assert_eq(ba_plan_validate(p, m, 1, &err), BA_OK, "%s", err.msg);
    int out[QM_NLAYERS];
    cr_assert_eq(ba_plan_bits(p, m, out, &err), BA_OK);
    cr_assert_eq(out[0], 5);
    cr_assert_eq(out[1], 6);
    cr_assert_eq(out[2], 7);
    ba_plan_free(p);
    qm_free(m);
}

Test(plan, write_to_a_missing_folder_fails_cleanly) {
    ba_model_t *m = qm_new();
    int bits[QM_NLAYERS] = {4, 4, 4};
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(ba_plan_from_bits(m, bits, NULL, &p, &err), BA_OK);
    cr_assert_eq(ba_plan_write(tmp_path("no/such/dir/p.json"), p, &err), BA_ERR_IO);
    cr_assert(strstr(err.msg, "p.json"), "%s", err.msg);
    ba_plan_free(p);
    qm_free(m);
}

/* Activations take one width for the whole model (quantizer.act_bits): a layer whose
 * a_bits says otherwise would be evaluated in float while the plan claims otherwise. */
Test(plan, per_layer_a_bits_must_match_quantizer_act_bits) {
    expect_invalid("\"macs\": 210, \"w_bits\": 8, \"a_bits\": null",
                   "\"macs\": 210, \"w_bits\": 8, \"a_bits\": 8", 1,
                   "layer 'fc.weight': a_bits 8 differs from quantizer.act_bits null");
    expect_invalid("\"act_bits\": null", "\"act_bits\": 8", 1,
                   "a_bits null differs from quantizer.act_bits 8");
    /* Every layer at act_bits: valid. */
    ba_model_t *m = qm_new();
    int bits[QM_NLAYERS] = {4, 8, 2};
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    cfg.act_bits = 8;
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(ba_plan_from_bits(m, bits, &cfg, &p, &err), BA_OK);
    cr_assert_eq(ba_plan_validate(p, m, 1, &err), BA_OK, "%s", err.msg);
    p->layers[1].a_bits = 4;
    cr_assert_eq(ba_plan_validate(p, m, 1, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "a_bits 4 differs from quantizer.act_bits 8"), "%s", err.msg);
    ba_plan_free(p);
    qm_free(m);
}

/* Totals are recomputed from the widths, never believed. */
Test(plan, lying_totals_are_recomputed_and_reported) {
    static const struct {
        const char *from, *to, *needle;
    } lies[] = {
        {"\"memory_bytes\": 544", "\"memory_bytes\": 100",
         "totals.memory_bytes 100, but its layers give 544"},
        {"\"bops\": 28403712.0", "\"bops\": 1.0", "totals.bops 1, but its layers give 28403712"},
        {"\"avg_bits\": ", "\"avg_bits\": 2.0, \"x\": ", "totals.avg_bits 2, but its layers give 5.0989"},
    };
    ba_model_t *m = qm_new();
    for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
        char *text = plan_text_with(lies[i].from, lies[i].to);
        ba_plan_t *p;
        ba_error err;
        cr_assert_eq(read_text(text, &p, &err), BA_OK, "%s", err.msg);
        cr_assert_eq(ba_plan_validate(p, m, 1, &err), BA_OK, "%s", err.msg);
        int differed = 0;
        char msg[512];
        cr_assert_eq(ba_plan_check_totals(p, m, &differed, msg, sizeof msg, &err), BA_OK, "%s", err.msg);
        cr_expect_eq(differed, 1, "case %zu", i);
        cr_expect(strstr(msg, "in.json") && strstr(msg, lies[i].needle), "case %zu: %s", i, msg);
        cr_expect_eq(p->totals.memory_bytes, 544);
        cr_expect_float_eq(p->totals.avg_bits, 2784.0 / 546.0, 1e-12);
        cr_expect_float_eq(p->totals.bops, 28403712.0, 0);
        ba_plan_free(p);
        free(text);
    }
    /* Honest totals: nothing to report. */
    char *text = plan_text_with(NULL, NULL);
    ba_plan_t *p;
    ba_error err;
    cr_assert_eq(read_text(text, &p, &err), BA_OK, "%s", err.msg);
    int differed = 1;
    char msg[512];
    cr_assert_eq(ba_plan_check_totals(p, m, &differed, msg, sizeof msg, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(differed, 0, "%s", msg);
    ba_plan_free(p);
    free(text);
    qm_free(m);
}
