/* The llama.cpp cost model (search --backend llama, or --bits naming ggml types):
 * a width costs the real bits per weight of the ggml type llama-quantize writes
 * for it on the layer's rows, after its fallback for rows a block does not
 * divide. Every figure is recomputed here from a table written out by hand
 * (block size and bytes per block from ggml's type_traits, fallbacks from
 * llama-quant.cpp's tensor_type_fallback), not from core/ggml_types.c. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bits.h"
#include "core/ggml_types.h"
#include "model/model.h"
#include "quant/cost.h"
#include "search/ilp.h"
#include "study/study.h"
#include "tests/helpers.h"

/* ---- the reference table: width -> (block, bytes) asked for, and its fallback ---- */

typedef struct {
    int bits;
    const char *type;
    int block, bytes;
    const char *fb_type; /* NULL: llama-quantize has no fallback */
    int fb_block, fb_bytes;
} ref_t;

static const ref_t REF[] = {
    {2, "q2_k", 256, 84, "q4_0", 32, 18},  {3, "q3_k", 256, 110, "q4_0", 32, 18},
    {4, "q4_k", 256, 144, "q5_0", 32, 22}, {5, "q5_k", 256, 176, "q5_1", 32, 24},
    {6, "q6_k", 256, 210, "q8_0", 32, 34}, {7, "q8_0", 32, 34, NULL, 0, 0},
    {8, "q8_0", 32, 34, NULL, 0, 0},       {16, "f16", 1, 2, NULL, 0, 0},
};

/* Real bits per weight of width b on rows of length ne0, and the type's name; 0 when none. */
static double ref_bpw(int b, int64_t ne0, const char **type) {
    for (size_t i = 0; i < sizeof REF / sizeof REF[0]; i++) {
        const ref_t *r = &REF[i];
        if (r->bits != b) continue;
        if (ne0 % r->block == 0) {
            if (type) *type = r->type;
            return 8.0 * r->bytes / r->block;
        }
        if (!r->fb_type) return 0;
        if (ne0 % r->fb_block == 0) {
            if (type) *type = r->fb_type;
            return 8.0 * r->fb_bytes / r->fb_block;
        }
        if (type) *type = "f16";
        return 16.0;
    }
    return 0;
}

/* ---- candidate lists ---- */

Test(llama_cost, ggml_type_names_in_bits_lists) {
    int bits[BA_BITS_MAX_CANDIDATES], n, named = -1;
    ba_error err;
    cr_assert_eq(ba_bits_parse_list_named("q4_k,Q5_K,q6_k,q8_0", bits, &n, &named, &err), BA_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 4);
    cr_expect(bits[0] == 4 && bits[1] == 5 && bits[2] == 6 && bits[3] == 8);
    cr_expect_eq(named, 1);
    cr_assert_eq(ba_bits_parse_list_named("f32,q2_k,3,f16", bits, &n, &named, &err), BA_OK, "%s", err.msg);
    cr_expect(n == 4 && bits[0] == 32 && bits[1] == 2 && bits[2] == 3 && bits[3] == 16);
    cr_assert_eq(ba_bits_parse_list_named("2,4,8", bits, &n, &named, &err), BA_OK);
    cr_expect_eq(named, 0, "plain widths are no llama.cpp target");
    /* a ggml type no width stands for, a word that is no type, repeats, bad separators */
    static const char *const bad[] = {"iq4_xs", "q4_0,q8_0", "q4_km", "q4_k,", "q4_k ,q5_k",
                                      "q8_0,8", "q4_k,Q4_K", "+4",    "q",     "bf16"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(ba_bits_parse_list(bad[i], bits, &n, &err), BA_ERR_INPUT, "'%s'", bad[i]);
    cr_assert_eq(ba_bits_parse_list("iq4_xs", bits, &n, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "iq4_xs") && strstr(err.msg, "q4_k"), "%s", err.msg);
    cr_assert_eq(ba_bits_parse_list("q4_km", bits, &n, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "q4_km") && strstr(err.msg, "ggml type"), "%s", err.msg);
}

Test(llama_cost, fallback_types_follow_llama_quantize) {
    for (size_t i = 0; i < sizeof REF / sizeof REF[0]; i++) {
        static const int64_t rows[] = {4096, 256, 768, 96, 64, 100, 3, 33};
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
            const char *want = NULL;
            double bpw = ref_bpw(REF[i].bits, rows[k], &want);
            const ba_ggml_type_t *t = ba_ggml_type_fallback(ba_ggml_type_for_bits(REF[i].bits), rows[k]);
            if (bpw == 0) {
                cr_expect_null(t, "%d bits, rows %lld", REF[i].bits, (long long)rows[k]);
                continue;
            }
            cr_assert_not_null(t, "%d bits, rows %lld", REF[i].bits, (long long)rows[k]);
            cr_expect(!strcasecmp(t->name, want), "%d bits, rows %lld: %s, not %s", REF[i].bits,
                      (long long)rows[k], t->name, want);
            cr_expect_eq(ba_ggml_type_bpw(t), bpw);
        }
    }
    cr_expect_null(ba_ggml_type_fallback(NULL, 256));
    cr_expect_eq(ba_ggml_bits_of_type_name("Q6_K"), 6);
    cr_expect_eq(ba_ggml_bits_of_type_name("q8_0"), 8, "q8_0 stands for 8, not 7");
    cr_expect_eq(ba_ggml_bits_of_type_name("iq4_nl"), 0);
    cr_expect_eq(ba_ggml_bits_of_type_name("q9_k"), -1);
}

/* ---- budgets on a hand-built model ---- */

/* Gemm layers [out, in] (transB=1, axis 0, so llama.cpp rows of length in), and one
 * MatMul [in, out] (axis 1, rows of length in too). Layer 6's rows are 160 long, or
 * 100 (ODD_ROW: no q8_0, q6_K falls back to f16) in the test of the row filter. */
#define NL 8
#define ODD_ROW 100
static int64_t IN[NL] = {512, 256, 1024, 96, 768, 64, 160, 2048};
static const int64_t OUT[NL] = {512, 1024, 256, 300, 768, 128, 50, 256};

static ba_model_t *model_new(int odd) {
    IN[6] = odd ? ODD_ROW : 160;
    ba_model_t *m = calloc(1, sizeof *m);
    m->path = strdup("llm.onnx");
    m->nlayers = NL;
    m->layers = calloc(NL, sizeof *m->layers);
    m->other_init_bytes = 1000;
    for (int l = 0; l < NL; l++) {
        ba_layer_t *ly = &m->layers[l];
        char name[32];
        snprintf(name, sizeof name, "blk.%d.weight", l);
        ly->name = strdup(name);
        ly->ndim = 2;
        if (l == NL - 1) { /* MatMul: [in, out], channel axis 1 */
            ly->shape[0] = IN[l], ly->shape[1] = OUT[l], ly->ch_axis = 1;
            ly->op = "MatMul";
        } else {
            ly->shape[0] = OUT[l], ly->shape[1] = IN[l], ly->ch_axis = 0;
            ly->op = "Gemm";
        }
        ly->params = IN[l] * OUT[l];
        ly->macs = ly->params;
    }
    return m;
}

static void model_del(ba_model_t *m) {
    for (int l = 0; l < m->nlayers; l++) free(m->layers[l].name);
    free(m->layers);
    free(m->path);
    free(m);
}

static const int BITS[] = {2, 3, 4, 5, 6, 8};
#define NB 6

/* The ILP's choice at avg-bits=limit under backend be; bits out per layer. */
static void solve(const ba_model_t *m, ba_backend_t be, double limit, int *bits) {
    double cost[NL * NB];
    for (int l = 0; l < NL; l++) {
        double s = 1.0 + 0.37 * l * l; /* sensitivities that differ from layer to layer */
        for (int j = 0; j < NB; j++) cost[l * NB + j] = s * (double)m->layers[l].params * pow(4.0, -BITS[j]);
    }
    ba_quant_cfg_t q = ba_quant_cfg_default();
    q.backend = be;
    ba_budget_set_t budgets = {1, {{BA_BUDGET_AVG_BITS, limit}}};
    ba_study_problem_spec_t spec = {.bits = BITS, .nbits = NB, .cost = cost, .qcfg = &q, .budgets = &budgets};
    ba_problem_t *p;
    ba_error err;
    cr_assert_eq(ba_study_problem_from_model(m, &spec, &p, &err), BA_OK, "%s", err.msg);
    ba_solution_t sol;
    cr_assert_eq(ba_ilp_solve(p, NULL, &sol, &err), BA_OK, "%s", err.msg);
    cr_expect(sol.optimal);
    memcpy(bits, sol.bits, NL * sizeof *bits);
    ba_solution_free(&sol);
    ba_problem_free(p);
}

static double real_bpw(const int *bits) {
    double params = 0, b = 0;
    for (int l = 0; l < NL; l++) {
        double bpw = ref_bpw(bits[l], IN[l], NULL);
        cr_assert_gt(bpw, 0, "layer %d: %d bits has no type on rows of %lld", l, bits[l], (long long)IN[l]);
        b += bpw * (double)(IN[l] * OUT[l]);
        params += (double)(IN[l] * OUT[l]);
    }
    return b / params;
}

static double nominal_bits(const int *bits) {
    double params = 0, b = 0;
    for (int l = 0; l < NL; l++) b += bits[l] * (double)(IN[l] * OUT[l]), params += (double)(IN[l] * OUT[l]);
    return b / params;
}

Test(llama_cost, avg_bits_budget_counts_what_llama_quantize_stores) {
    ba_model_t *m = model_new(0);
    int onnx[NL], llama[NL];
    solve(m, BA_BACKEND_ONNX, 4.5, onnx);
    solve(m, BA_BACKEND_LLAMA, 4.5, llama);
    double nominal_plan = real_bpw(onnx), llama_plan = real_bpw(llama);
    cr_expect_leq(nominal_bits(onnx), 4.5 + 1e-12);
    cr_expect_gt(nominal_plan, 4.5, "the nominal-bit plan stores %.4f bits per weight in llama.cpp",
                 nominal_plan);
    cr_expect_leq(llama_plan, 4.5 + 1e-12, "the llama plan stores %.4f bits per weight", llama_plan);
    cr_expect_gt(llama_plan, 4.0, "the budget is used, not wasted: %.4f", llama_plan);
    /* the plan's totals (what trials and plans report) are the same figures */
    ba_quant_cfg_t q = ba_quant_cfg_default();
    q.backend = BA_BACKEND_LLAMA;
    ba_cost_t c;
    ba_error err;
    cr_assert_eq(ba_cost_config(m, llama, &q, &c, &err), BA_OK, "%s", err.msg);
    cr_expect_float_eq(c.avg_bits, llama_plan, 1e-12);
    int64_t bytes = m->other_init_bytes;
    for (int l = 0; l < NL; l++)
        bytes += (int64_t)llroundl(ref_bpw(llama[l], IN[l], NULL) * IN[l] * OUT[l] / 8);
    cr_expect_eq(c.memory_bytes, bytes);
    model_del(m);
}

Test(llama_cost, memory_budget_in_ggml_bytes_and_rows_filter_candidates) {
    ba_model_t *m = model_new(1);
    ba_quant_cfg_t q = ba_quant_cfg_default();
    q.backend = BA_BACKEND_LLAMA;
    /* q4_K on 512-long rows: 512·512/256·144 bytes; on 96-long rows it falls back to q5_0 */
    cr_expect_eq(ba_cost_layer_memory(&m->layers[0], 4, &q), 512 * 512 / 256 * 144);
    cr_expect_eq(ba_cost_layer_memory(&m->layers[3], 4, &q), 96 * 300 / 32 * 22);
    cr_expect_eq(ba_cost_layer_row(&m->layers[NL - 1]), IN[NL - 1], "MatMul [in, out]: rows of in");
    cr_expect_eq(ba_cost_layer_memory(&m->layers[6], 8, &q), -1, "q8_0 on rows of 100: no type");
    cr_expect_eq(ba_cost_layer_bits(&m->layers[6], 6, &q), 16.0, "q6_K -> q8_0 -> f16 on rows of 100");
    cr_expect_eq(ba_cost_layer_bits(&m->layers[6], 6, NULL), 6.0, "without the backend: nominal");
    int bits[NL] = {4, 4, 4, 4, 4, 4, 8, 4};
    ba_cost_t c;
    ba_error err;
    cr_expect_eq(ba_cost_config(m, bits, &q, &c, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "blk.6.weight") && strstr(err.msg, "100"), "%s", err.msg);
    /* the search leaves 8 bits out of blk.6's candidates, and only there */
    double cost[NL * NB];
    for (int i = 0; i < NL * NB; i++) cost[i] = 1.0 / (1 + i % NB);
    ba_budget_set_t budgets = {1, {{BA_BUDGET_MEMORY, 4e6}}};
    ba_study_problem_spec_t spec = {.bits = BITS, .nbits = NB, .cost = cost, .qcfg = &q, .budgets = &budgets};
    ba_problem_t *p;
    cr_assert_eq(ba_study_problem_from_model(m, &spec, &p, &err), BA_OK, "%s", err.msg);
    for (int l = 0; l < NL; l++) cr_expect_eq(ba_problem_find(p, l, 8) >= 0, l != 6, "layer %d", l);
    /* memory coefficients are ggml bytes, offset the other initializers */
    int k = p->start[0] + ba_problem_find(p, 0, 2);
    cr_expect_eq(p->coef[0][k], 512.0 * 512 / 256 * 84);
    cr_expect_eq(p->offset[0], 1000.0);
    ba_problem_free(p);
    model_del(m);
}

/* ---- end to end: search on the small GPT, export for llama-quantize ---- */

#define ZOO BA_FIXTURES "/zoo/"

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert(j, "%s: %s", path, je.text);
    return j;
}

Test(llama_cost, search_with_ggml_types_writes_a_llama_plan_and_its_exact_types, .timeout = 120) {
    char dir[512], db[600], plan[600], types[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    snprintf(types, sizeof types, "%s/types.txt", dir);
    ba_test_run_t r =
        ba_test_cli("--db", db, "-q", "search", ZOO "gpt.onnx", "--data", ZOO "gpt_x.npy", "--method", "ilp",
                    "--sensitivity", "weight", "--bits", "q2_k,q3_k,q4_k,q5_k,q6_k,q8_0", "--budget",
                    "avg-bits=4.5", "--study", "g", "--plan-out", plan, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_model_t *m;
    ba_error err;
    cr_assert_eq(ba_model_load(ZOO "gpt.onnx", NULL, &m, &err), BA_OK, "%s", err.msg);
    json_t *j = load_json(plan);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "quantizer"), "backend")), "llama");
    json_t *layers = json_object_get(j, "layers");
    cr_assert_eq((int)json_array_size(layers), m->nlayers);
    double params = 0, real = 0, nominal = 0;
    int fallback = 0;
    r = ba_test_cli("--db", db, "-q", "export", "--study", "g", "--format", "llama", "-o", types, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    FILE *f = fopen(types, "r");
    cr_assert(f);
    char text[8192] = "";
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
    for (int l = 0; l < m->nlayers; l++) {
        const ba_layer_t *ly = &m->layers[l];
        json_t *pl = json_array_get(layers, (size_t)l);
        cr_assert_str_eq(json_string_value(json_object_get(pl, "name")), ly->name);
        int b = (int)json_integer_value(json_object_get(pl, "w_bits"));
        /* gpt's weights are MatMul [in, out]: llama.cpp rows of length in */
        const char *type = NULL;
        double bpw = ref_bpw(b, ly->shape[0], &type);
        cr_assert_gt(bpw, 0, "%s: %d bits", ly->name, b);
        fallback += ly->shape[0] % 256 != 0 && b != 8;
        real += bpw * (double)ly->params;
        nominal += b * (double)ly->params;
        params += (double)ly->params;
        /* the tensor-type lines hold exactly as many lines of this type as layers planned to it */
        int want = 0, lines = 0;
        for (int k = 0; k < m->nlayers; k++) {
            const char *tk = NULL;
            ref_bpw((int)json_integer_value(json_object_get(json_array_get(layers, (size_t)k), "w_bits")),
                    m->layers[k].shape[0], &tk);
            want += tk && !strcmp(tk, type);
        }
        for (const char *s = text; (s = strchr(s, '=')); s++) {
            const char *eol = strchr(s, '\n');
            size_t n = eol ? (size_t)(eol - s - 1) : strlen(s + 1);
            lines += n == strlen(type) && !strncmp(s + 1, type, n);
        }
        cr_expect_eq(lines, want, "%s: %d lines of type %s, %d layers planned to it:\n%s", ly->name, lines,
                     type, want, text);
    }
    cr_expect_gt(fallback, 0, "the fixture has rows that fall back");
    double totals = json_real_value(json_object_get(json_object_get(j, "totals"), "avg_bits"));
    cr_expect_float_eq(totals, real / params, 1e-12, "totals.avg_bits %.6f, real %.6f", totals,
                       real / params);
    cr_expect_leq(real / params, 4.5 + 1e-12);
    cr_expect_lt(nominal / params, real / params);
    cr_expect_eq(ba_test_count_lines(text), (size_t)m->nlayers);
    /* the trial stored with the study (from the settings the study keeps) counts the same */
    r = ba_test_cli("--db", db, "trials", "--study", "g", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *t = json_loads(r.out, 0, &je);
    cr_assert(json_is_array(t), "%s", r.out);
    cr_expect_float_eq(json_real_value(json_object_get(json_array_get(t, 0), "avg_bits")), real / params,
                       1e-12);
    json_decref(t);
    ba_test_run_free(&r);
    json_decref(j);
    ba_model_free(m);
    ba_test_rmtree(dir);
}

Test(llama_cost, bad_type_names_and_backends_exit_2_naming_the_flag) {
    static const char *const cases[][4] = {
        {"--bits", "q4_km", "--bits", "q4_km"},
        {"--bits", "iq4_xs,q8_0", "--bits", "iq4_xs"},
        {"--bits", "q4_k,q4_k", "--bits", "twice"},
        {"--backend", "gguf", "--backend", "gguf"},
    };
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ba_test_run_t r = ba_test_cli("--db", db, "search", ZOO "gpt.onnx", "--data", ZOO "gpt_x.npy",
                                      "--budget", "avg-bits=4", cases[i][0], cases[i][1], NULL);
        cr_expect_eq(r.status, 2, "%s %s: %d\n%s", cases[i][0], cases[i][1], r.status, r.err);
        cr_expect(strstr(r.err, "bitalloc: error: ") && strstr(r.err, cases[i][2]) &&
                      strstr(r.err, cases[i][3]),
                  "%s", r.err);
        ba_test_run_free(&r);
    }
    /* type names with --backend onnx contradict each other */
    ba_test_run_t r = ba_test_cli("--db", db, "search", ZOO "gpt.onnx", "--data", ZOO "gpt_x.npy", "--budget",
                                  "avg-bits=4", "--bits", "q4_k,q8_0", "--backend", "onnx", NULL);
    cr_expect_eq(r.status, 2, "%s", r.err);
    cr_expect(strstr(r.err, "--backend onnx"), "%s", r.err);
    ba_test_run_free(&r);
    /* a budget no llama.cpp type can meet says the smallest real figure: exit 3 */
    r = ba_test_cli("--db", db, "-q", "search", ZOO "gpt.onnx", "--data", ZOO "gpt_x.npy", "--method", "ilp",
                    "--sensitivity", "weight", "--backend", "llama", "--budget", "avg-bits=3", NULL);
    cr_expect_eq(r.status, 3, "%s", r.err);
    cr_expect(strstr(r.err, "smallest achievable avg-bits"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}
