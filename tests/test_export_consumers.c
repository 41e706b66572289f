/* The exports replayed through each consumer's own matching rule, on the
 * digits CNN, the zoo ResNet (torchvision's) and the zoo GPT, whose PyTorch
 * module lists tests/fixtures/make_consumers.py recorded:
 *  - ModelOpt (modelopt/torch/quantization/conversion.py set_quantizer_by_cfg):
 *    "default" applied to every quantizer first, then each pattern in order,
 *    fnmatch over "<module>.weight_quantizer"-style names, a later match
 *    winning; QuantizerAttributeConfig's validator (integer block_sizes keys,
 *    axis None with block_sizes).
 *  - llama.cpp (tools/quantize/quantize.cpp, src/llama-quant.cpp): the pattern
 *    lowercased, then the first std::regex_search hit wins; replayed with POSIX
 *    ERE (equivalent for the ^ \. literal $ patterns written for these names)
 *    and with ECMAScript itself through tests/node/llama_match.js.
 *  - HAWQ (quant_train.py): bit_config[name] for each name in named_modules().
 * Every planned layer must get exactly its planned format. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <fnmatch.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ggml_types.h"
#include "quant/export.h"
#include "quant/export_tools.h"
#include "quant/namemap.h"
#include "tests/helpers.h"

#define MODULES BA_FIXTURES "/consumers/modules.json"

static const char *const FIXTURES[] = {"cnn", "resnet", "gpt"};
#define NFIX (sizeof FIXTURES / sizeof FIXTURES[0])
/* Widths cycled over the layers: every width ModelOpt and llama.cpp take. */
static const int WIDTHS[] = {4, 8, 2, 6, 3, 5, 16, 7, 8, 32};

typedef struct {
    json_t *root; /* modules.json */
    json_t *fix;  /* its entry for the fixture */
    ba_model_t *m;
    ba_plan_t *p;
} fix_t;

static fix_t fix_load(const char *key, const ba_quant_cfg_t *cfg) {
    fix_t f = {0};
    json_error_t je;
    f.root = json_load_file(MODULES, 0, &je);
    cr_assert(f.root, "%s: %s", MODULES, je.text);
    f.fix = json_object_get(f.root, key);
    cr_assert(f.fix, "%s: no %s", MODULES, key);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", BA_FIXTURES, json_string_value(json_object_get(f.fix, "onnx")));
    ba_error err;
    cr_assert_eq(ba_model_load(path, NULL, &f.m, &err), BA_OK, "%s", err.msg);
    int *bits = calloc((size_t)f.m->nlayers, sizeof *bits);
    for (int l = 0; l < f.m->nlayers; l++) bits[l] = WIDTHS[l % (sizeof WIDTHS / sizeof WIDTHS[0])];
    cr_assert_eq(ba_plan_from_bits(f.m, bits, cfg, &f.p, &err), BA_OK, "%s", err.msg);
    free(bits);
    return f;
}

static void fix_free(fix_t *f) {
    ba_plan_free(f->p);
    ba_model_free(f->m);
    json_decref(f->root);
}

/* The class of PyTorch module `name`, or NULL when the model has none. */
static const char *module_class(const fix_t *f, const char *name) {
    json_t *mods = json_object_get(f->fix, "modules"), *e;
    size_t i;
    json_array_foreach(mods, i, e) {
        if (!strcmp(json_string_value(json_array_get(e, 0)), name))
            return json_string_value(json_array_get(e, 1));
    }
    return NULL;
}

static int plan_bits(const fix_t *f, int li) {
    for (int i = 0; i < f->p->nlayers; i++)
        if (!strcmp(f->p->layers[i].name, f->m->layers[li].name)) return f->p->layers[i].w_bits;
    cr_assert_fail("layer %s not in the plan", f->m->layers[li].name);
    return -1;
}

/* The module path each exporter convention gives is a real module of the right kind. */
Test(export_consumers, derived_module_paths_are_the_pytorch_modules) {
    for (size_t k = 0; k < NFIX; k++) {
        fix_t f = fix_load(FIXTURES[k], NULL);
        for (int li = 0; li < f.m->nlayers; li++) {
            char name[512];
            ba_name_src_t src = ba_namemap_layer(f.m, li, NULL, name, sizeof name);
            cr_expect_neq(src, BA_NAME_NONE, "%s: %s has no name", FIXTURES[k], f.m->layers[li].name);
            const char *cls = module_class(&f, name);
            cr_expect(cls, "%s: %s -> '%s' is no module of the PyTorch model", FIXTURES[k],
                      f.m->layers[li].name, name);
            if (!cls) continue;
            const char *op = f.m->layers[li].op;
            const char *want = !strcmp(op, "Conv")     ? "Conv2d"
                               : !strcmp(op, "Gather") ? "Embedding"
                                                       : "Linear";
            cr_expect_str_eq(cls, want, "%s: %s (%s)", FIXTURES[k], name, op);
        }
        fix_free(&f);
    }
}

Test(export_consumers, scope_conventions) {
    char b[256];
    static const struct {
        const char *node, *module;
    } ok[] = {{"/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"},
              {"/layer1/0/conv1/Conv", "layer1.0.conv1"},
              {"/layer2/layer2.0/downsample/downsample.0/Conv", "layer2.0.downsample.0"},
              {"/blocks.0/attn/qkv/MatMul", "blocks.0.attn.qkv"},
              {"/fc/Gemm", "fc"},
              {"sequential/dense_1/MatMul", "sequential.dense_1"},
              {"StatefulPartitionedCall/model/conv2d/Conv2D", "model.conv2d"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cr_expect_eq(ba_namemap_scope(ok[i].node, b, sizeof b), 1, "%s", ok[i].node);
        cr_expect_str_eq(b, ok[i].module, "%s", ok[i].node);
    }
    static const char *const none[] = {"Conv_0", "/Conv", "", "MatMul_12"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        cr_expect_eq(ba_namemap_scope(none[i], b, sizeof b), 0, "%s", none[i]);
}

/* ------------------------------------------------------------- ModelOpt */

typedef struct {
    char name[512];
    int enable, num_bits, axis_null, axis, has_blocks;
} quantizer_t;

/* QuantizerAttributeConfig's validator (config.py) on one attribute dict. */
static void validate_cfg(const char *key, json_t *q) {
    json_t *bs = json_object_get(q, "block_sizes");
    if (!bs) return;
    cr_expect(json_is_null(json_object_get(q, "axis")), "%s: axis must be None when block_sizes is not None",
              key);
    const char *k;
    json_t *v;
    json_object_foreach(bs, k, v) {
        char *end;
        (void)strtol(k, &end, 10);
        int is_int = *k && !*end; /* an int after the documented loader's key conversion */
        cr_expect(is_int || !strcmp(k, "type") || !strcmp(k, "scale_bits") || !strcmp(k, "scale_block_sizes"),
                  "%s: block_sizes key '%s'", key, k);
        if (is_int) cr_expect(json_is_null(v) || json_is_integer(v), "%s: block size", key);
    }
}

static void set_attrs(quantizer_t *q, json_t *cfg) {
    json_t *v;
    if ((v = json_object_get(cfg, "enable"))) q->enable = json_is_true(v);
    if ((v = json_object_get(cfg, "num_bits"))) q->num_bits = (int)json_integer_value(v);
    if ((v = json_object_get(cfg, "axis"))) {
        q->axis_null = json_is_null(v);
        q->axis = (int)json_integer_value(v);
    }
    if (json_object_get(cfg, "block_sizes")) q->has_blocks = 1;
}

static void replay_modelopt(const char *what, const fix_t *f, const char *text, const ba_quant_cfg_t *cfg) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert(j, "%s: not JSON: %s", what, je.text);
    json_t *qc = json_object_get(j, "quant_cfg");
    /* the model's quantizers: ModelOpt gives nn.Conv2d / nn.Linear weight, input and output quantizers */
    json_t *mods = json_object_get(f->fix, "modules"), *e;
    size_t i, nq = 0;
    quantizer_t *qs = calloc(json_array_size(mods) * 3 + 1, sizeof *qs);
    json_array_foreach(mods, i, e) {
        const char *cls = json_string_value(json_array_get(e, 1));
        if (strcmp(cls, "Conv2d") && strcmp(cls, "Linear")) continue;
        static const char *const kinds[] = {"weight_quantizer", "input_quantizer", "output_quantizer"};
        for (int k = 0; k < 3; k++)
            snprintf(qs[nq++].name, sizeof qs[0].name, "%s.%s", json_string_value(json_array_get(e, 0)),
                     kinds[k]);
    }
    /* set_quantizer_by_cfg: "default" on "*" first, then the patterns in order */
    const char *key;
    json_t *v;
    json_t *dflt = json_object_get(qc, "default");
    cr_assert(dflt, "%s: no default", what);
    for (size_t k = 0; k < nq; k++) set_attrs(&qs[k], dflt);
    json_object_foreach(qc, key, v) {
        if (!strcmp(key, "default")) continue;
        validate_cfg(key, v);
        for (size_t k = 0; k < nq; k++)
            if (fnmatch(key, qs[k].name, 0) == 0) set_attrs(&qs[k], v);
    }
    /* every planned layer's weight quantizer has exactly its plan */
    int planned = 0;
    for (int li = 0; li < f->m->nlayers; li++) {
        char mod[512], wq[600];
        ba_namemap_layer(f->m, li, NULL, mod, sizeof mod);
        size_t n = strlen(mod);
        if (n > 7 && !strcmp(mod + n - 7, ".weight")) mod[n - 7] = '\0';
        if (!strcmp(f->m->layers[li].op, "Gather")) continue; /* no ModelOpt quantizer: warned */
        snprintf(wq, sizeof wq, "%s.weight_quantizer", mod);
        int b = plan_bits(f, li);
        quantizer_t *q = NULL;
        for (size_t k = 0; k < nq; k++)
            if (!strcmp(qs[k].name, wq)) q = &qs[k];
        cr_assert(q, "%s: %s has no quantizer", what, wq);
        planned++;
        if (b > 8) {
            cr_expect(!q->enable, "%s: %s: %d bits stay float", what, wq, b);
            continue;
        }
        cr_expect(q->enable && q->num_bits == b, "%s: %s: enable %d, %d bits, planned %d", what, wq,
                  q->enable, q->num_bits, b);
        if (cfg->granularity == BA_GRAN_PER_CHANNEL)
            cr_expect(!q->axis_null && q->axis == 0, "%s: %s: axis %d (PyTorch out channels: 0)", what, wq,
                      q->axis);
        else
            cr_expect(q->axis_null, "%s: %s: axis None", what, wq);
        cr_expect_eq(q->has_blocks, cfg->granularity == BA_GRAN_GROUP, "%s: %s", what, wq);
    }
    cr_expect_gt(planned, 0);
    /* nothing else switched on */
    for (size_t k = 0; k < nq; k++) {
        if (!qs[k].enable) continue;
        int ok = 0;
        for (int li = 0; li < f->m->nlayers && !ok; li++) {
            char mod[512], wq[600];
            ba_namemap_layer(f->m, li, NULL, mod, sizeof mod);
            snprintf(wq, sizeof wq, "%s.weight_quantizer", mod);
            ok = !strcmp(wq, qs[k].name) ||
                 (cfg->act_bits > 0 && snprintf(wq, sizeof wq, "%s.input_quantizer", mod) > 0 &&
                  !strcmp(wq, qs[k].name));
        }
        cr_expect(ok, "%s: %s enabled but not planned", what, qs[k].name);
    }
    free(qs);
    json_decref(j);
}

Test(export_consumers, modelopt_applies_every_planned_width_through_fnmatch_and_the_validator) {
    const char *grans[] = {"per-channel", "per-tensor", "group:32"};
    for (size_t k = 0; k < NFIX; k++)
        for (size_t g = 0; g < 3; g++) {
            ba_quant_cfg_t cfg = ba_quant_cfg_default();
            ba_error err;
            cr_assert_eq(ba_quant_cfg_parse_granularity(grans[g], &cfg, &err), BA_OK);
            cfg.act_bits = g == 1 ? 8 : 0;
            fix_t f = fix_load(FIXTURES[k], &cfg);
            char *text;
            ba_export_report_t rep;
            cr_assert_eq(ba_export_text_opts(f.p, f.m, BA_EXPORT_MODELOPT, NULL, &rep, &text, &err), BA_OK,
                         "%s", err.msg);
            int gathers = 0;
            for (int l = 0; l < f.m->nlayers; l++) gathers += !strcmp(f.m->layers[l].op, "Gather");
            cr_expect_eq(rep.named, f.m->nlayers - gathers, "%s", FIXTURES[k]);
            char what[64];
            snprintf(what, sizeof what, "%s %s", FIXTURES[k], grans[g]);
            replay_modelopt(what, &f, text, &cfg);
            free(text);
            fix_free(&f);
        }
}

/* The Python variant holds the same config, with block_sizes keys as ints. */
Test(export_consumers, modelopt_py_is_the_same_config_with_integer_block_keys) {
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    ba_error err;
    cr_assert_eq(ba_quant_cfg_parse_granularity("group:16", &cfg, &err), BA_OK);
    fix_t f = fix_load("gpt", &cfg);
    char *js, *py, dir[512], pj[600], pp[600];
    cr_assert_eq(ba_export_text(f.p, f.m, BA_EXPORT_MODELOPT, &js, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_export_text(f.p, f.m, BA_EXPORT_MODELOPT_PY, &py, &err), BA_OK, "%s", err.msg);
    cr_expect(strstr(py, "QUANT_CFG = {"), "%s", py);
    cr_expect(strstr(py, "\"block_sizes\": {\n") && strstr(py, "-1: 16"), "%s", py);
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(pj, sizeof pj, "%s/cfg.json", dir);
    snprintf(pp, sizeof pp, "%s/cfg_py.py", dir);
    cr_assert_eq(ba_test_write_file(pj, js), 0);
    cr_assert_eq(ba_test_write_file(pp, py), 0);
    /* docs/export.md's JSON loader (integer-looking keys to int) gives the module's dict */
    char code[2400];
    snprintf(code, sizeof code,
             "import json, runpy\n"
             "hook = lambda d: {(int(k) if k.lstrip('-').isdigit() else k): v for k, v in d.items()}\n"
             "a = json.load(open('%s'), object_hook=hook)\n"
             "b = runpy.run_path('%s')['QUANT_CFG']\n"
             "assert a == b, (a, b)\n"
             "bs = [v['block_sizes'] for v in b['quant_cfg'].values() if 'block_sizes' in v]\n"
             "assert bs and all(list(x) == [-1] and isinstance(list(x)[0], int) for x in bs), bs\n",
             pj, pp);
    const char *argv[] = {"/usr/bin/env", "python3", "-c", code, NULL};
    char *out = NULL, *errs = NULL;
    int st = -1;
    if (ba_test_run(argv, &out, &errs, &st) == 0 && st != 127) cr_expect_eq(st, 0, "python3: %s", errs);
    free(out);
    free(errs);
    ba_test_rmtree(dir);
    free(js);
    free(py);
    fix_free(&f);
}

/* -------------------------------------------------------------- llama.cpp */

static char *lower_dup(const char *s) {
    char *d = strdup(s);
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return d;
}

/* The type llama-quantize gives tensor `name` from the file's patterns (POSIX ERE
 * stands in for ECMAScript: the patterns use only ^ $ \. and literals), or NULL. */
static char *llama_type(const char *text, const char *name) {
    char *copy = strdup(text), *save = NULL, *res = NULL;
    for (char *tok = strtok_r(copy, " \t\r\n", &save); tok && !res; tok = strtok_r(NULL, " \t\r\n", &save)) {
        char *eq = strchr(tok, '=');
        cr_assert(eq, "no '=' in %s", tok);
        *eq = '\0';
        char *pat = lower_dup(tok);
        cr_assert(!strstr(pat, "\\x") && !strchr(pat, '['), "pattern %s needs ECMAScript (node replay)", pat);
        regex_t re;
        cr_assert_eq(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0, "%s", pat);
        if (regexec(&re, name, 0, NULL, 0) == 0) res = strdup(eq + 1);
        regfree(&re);
        free(pat);
    }
    free(copy);
    return res;
}

Test(export_consumers, llama_gives_every_planned_tensor_exactly_its_type) {
    for (size_t k = 0; k < NFIX; k++) {
        fix_t f = fix_load(FIXTURES[k], NULL);
        ba_namemap_t *map = NULL;
        ba_error err;
        if (!strcmp(FIXTURES[k], "gpt"))
            cr_assert_eq(ba_namemap_load(BA_FIXTURES "/consumers/gpt_gguf.csv", &map, &err), BA_OK, "%s",
                         err.msg);
        ba_export_opts_t o = {.names = map};
        ba_export_report_t rep;
        char *text;
        cr_assert_eq(ba_export_text_opts(f.p, f.m, BA_EXPORT_LLAMA, &o, &rep, &text, &err), BA_OK, "%s",
                     err.msg);
        cr_expect_eq(rep.named, f.m->nlayers);
        double params = 0, want = 0;
        for (int li = 0; li < f.m->nlayers; li++) {
            params += (double)f.m->layers[li].params;
            want += ba_ggml_bpw_of_bits(plan_bits(&f, li)) * (double)f.m->layers[li].params;
        }
        cr_expect_float_eq(rep.ggml_bits, want / params, 1e-9, "%s: %g bits per weight", FIXTURES[k],
                           rep.ggml_bits);
        cr_expect_gt(rep.ggml_bits, rep.nominal_bits);
        for (int li = 0; li < f.m->nlayers; li++) {
            char name[512];
            ba_namemap_layer(f.m, li, map, name, sizeof name);
            if (!strstr(name, ".weight")) strcat(name, ".weight");
            char *t = llama_type(text, name);
            cr_expect(t && !strcmp(t, ba_ggml_type_name_for_bits(plan_bits(&f, li))),
                      "%s: %s -> %s, planned %d bits", FIXTURES[k], name, t ? t : "(none)",
                      plan_bits(&f, li));
            free(t);
            /* near misses match nothing: dots are escaped, both ends anchored */
            char miss[600];
            snprintf(miss, sizeof miss, "x%s", name);
            cr_expect_null((t = llama_type(text, miss)), "%s", miss);
            free(t);
            snprintf(miss, sizeof miss, "%sx", name);
            cr_expect_null((t = llama_type(text, miss)), "%s", miss);
            free(t);
            strcpy(miss, name);
            *strchr(miss, '.') = '_';
            cr_expect_null((t = llama_type(text, miss)), "%s", miss);
            free(t);
        }
        if (map) cr_expect(strstr(text, "^blk\\.1\\.ffn_down\\.weight$="), "%s", text);
        free(text);
        ba_namemap_free(map);
        fix_free(&f);
    }
}

/* Names lowercasing would break (upper case, spaces, '='): ECMAScript itself. */
Test(export_consumers, llama_patterns_survive_lowercasing_under_ecmascript, .timeout = 60) {
    struct stat sb;
    if (stat(BA_FIXTURES "/../node/llama_match.js", &sb) != 0) cr_skip_test("no tests/node/llama_match.js");
    fix_t f = fix_load("cnn", NULL);
    char dir[512], mp[600], tp[600], np[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(mp, sizeof mp, "%s/map.json", dir);
    snprintf(tp, sizeof tp, "%s/types.txt", dir);
    snprintf(np, sizeof np, "%s/names.txt", dir);
    static const char *const names[] = {"Blk.0.Attn_Q.weight", "blk.0 attn.weight", "a=b(1)+[x]*.weight",
                                        "blk.0.attn_q.weight"};
    cr_assert_eq(ba_test_write_file(mp, "{\"onnx::Conv_31\": \"Blk.0.Attn_Q.weight\", \"onnx::Conv_34\": "
                                        "\"blk.0 attn\", \"conv3.weight\": \"a=b(1)+[x]*\", \"fc.weight\": "
                                        "\"blk.0.attn_q\"}"),
                 0);
    ba_namemap_t *map;
    ba_error err;
    cr_assert_eq(ba_namemap_load(mp, &map, &err), BA_OK, "%s", err.msg);
    ba_export_opts_t o = {.names = map};
    char *text;
    cr_assert_eq(ba_export_text_opts(f.p, f.m, BA_EXPORT_LLAMA, &o, NULL, &text, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_test_write_file(tp, text), 0);
    char list[512] = "";
    for (size_t i = 0; i < 4; i++) {
        strcat(list, names[i]);
        strcat(list, "\n");
    }
    cr_assert_eq(ba_test_write_file(np, list), 0);
    const char *argv[] = {"/usr/bin/env", "node", BA_FIXTURES "/../node/llama_match.js", tp, np, NULL};
    char *out = NULL, *errs = NULL;
    int st = -1;
    if (ba_test_run(argv, &out, &errs, &st) != 0 || st == 127) {
        free(out);
        free(errs);
        cr_skip_test("node is not installed");
    }
    cr_assert_eq(st, 0, "llama_match.js: %s", errs);
    for (int l = 0; l < 4; l++) {
        char want[300];
        /* llama-quantize reads the type name case-insensitively; the replay prints it lowercased */
        char type[32];
        snprintf(type, sizeof type, "%s", ba_ggml_type_for_bits(plan_bits(&f, l))->name);
        for (char *p = type; *p; p++) *p = (char)tolower((unsigned char)*p);
        snprintf(want, sizeof want, "%s=%s\n", names[l], type);
        cr_expect(strstr(out, want), "no '%s' in\n%s\nfrom\n%s", want, out, text);
    }
    free(out);
    free(errs);
    free(text);
    ba_namemap_free(map);
    ba_test_rmtree(dir);
    fix_free(&f);
}

Test(export_consumers, ggml_real_bits_per_weight) {
    static const struct {
        int bits;
        double bpw;
    } t[] = {{2, 2.625}, {3, 3.4375}, {4, 4.5}, {5, 5.5}, {6, 6.5625},
             {7, 8.5},   {8, 8.5},    {16, 16}, {32, 32}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_expect_eq(ba_ggml_bpw_of_bits(t[i].bits), t[i].bpw, "%d bits", t[i].bits);
    cr_expect_eq(ba_ggml_bpw_of_bits(9), 0.0);
}

/* ------------------------------------------------------------------- HAWQ */

/* quant_train.py: each module named in bit_config gets bit_config[name]. The
 * HAWQ q_resnet module names of the zoo ResNet (BasicBlock, one unit per stage;
 * HAWQ's bit_config.py lists the same for resnet18 with two). */
static void hawq_resnet_modules(char names[][64], int *n) {
    *n = 0;
    static const char *const top[] = {"quant_input", "quant_init_block_convbn", "quant_act_int32",
                                      "quant_act_output", "quant_output"};
    for (int i = 0; i < 5; i++) snprintf(names[(*n)++], 64, "%s", top[i]);
    for (int s = 1; s <= 4; s++) {
        static const char *const unit[] = {"quant_act",     "quant_convbn1",   "quant_act1",
                                           "quant_convbn2", "quant_act_int32", "quant_identity_convbn"};
        for (int u = 0; u < (s == 1 ? 5 : 6); u++)
            snprintf(names[(*n)++], 64, "stage%d.unit1.%s", s, unit[u]);
    }
}

Test(export_consumers, hawq_resnet_bit_config_reaches_every_hawq_module) {
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    cfg.act_bits = 6;
    fix_t f = fix_load("resnet", &cfg);
    char *text;
    ba_error err;
    ba_export_report_t rep;
    cr_assert_eq(ba_export_text_opts(f.p, f.m, BA_EXPORT_HAWQ, NULL, &rep, &text, &err), BA_OK, "%s",
                 err.msg);
    cr_expect_eq(rep.named, f.m->nlayers);
    cr_expect_eq(rep.nwarnings, 0);
    json_t *bc = json_loads(text, 0, NULL);
    cr_assert(json_is_object(bc), "%s", text);
    char names[64][64];
    int n, matched = 0;
    hawq_resnet_modules(names, &n);
    for (int i = 0; i < n; i++) matched += json_object_get(bc, names[i]) != NULL;
    /* every key names a HAWQ module ("match all modules defined in bit_config: True") */
    cr_expect_eq(matched, (int)json_object_size(bc), "%s", text);
    cr_expect_eq(matched, n, "every HAWQ quantizer gets a width:\n%s", text);
    for (int li = 0; li < f.m->nlayers; li++) {
        char mod[512], w[128], a[128];
        ba_namemap_layer(f.m, li, NULL, mod, sizeof mod);
        cr_assert(ba_export_hawq_resnet_name(mod, w, sizeof w, a, sizeof a), "%s", mod);
        cr_expect_eq(json_integer_value(json_object_get(bc, w)), plan_bits(&f, li), "%s (%s)", w, mod);
        cr_expect_eq(json_integer_value(json_object_get(bc, a)), 6, "%s", a);
    }
    cr_expect_eq(json_integer_value(json_object_get(bc, "stage2.unit1.quant_act_int32")), 16);
    json_decref(bc);
    free(text);
    fix_free(&f);
}

/* The CNN and the GPT have no HAWQ model: a name map gives each layer its HAWQ module. */
Test(export_consumers, hawq_name_map_reaches_every_mapped_module) {
    static const char *const keys[] = {"cnn", "gpt"};
    for (size_t k = 0; k < 2; k++) {
        fix_t f = fix_load(keys[k], NULL);
        json_t *m = json_object();
        for (int li = 0; li < f.m->nlayers; li++) {
            char hn[64];
            snprintf(hn, sizeof hn, "q.layer%d.quant_convbn", li);
            json_object_set_new(m, f.m->layers[li].name, json_string(hn));
            snprintf(hn, sizeof hn, "q.layer%d.quant_act", li);
            char ak[600];
            snprintf(ak, sizeof ak, "act:%s", f.m->nodes[f.m->layers[li].node].name);
            json_object_set_new(m, ak, json_string(hn));
        }
        char dir[512], mp[600];
        cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
        snprintf(mp, sizeof mp, "%s/m.json", dir);
        cr_assert_eq(json_dump_file(m, mp, 0), 0);
        json_decref(m);
        ba_namemap_t *map;
        ba_error err;
        cr_assert_eq(ba_namemap_load(mp, &map, &err), BA_OK, "%s", err.msg);
        ba_export_opts_t o = {.names = map};
        ba_export_report_t rep;
        char *text;
        cr_assert_eq(ba_export_text_opts(f.p, f.m, BA_EXPORT_HAWQ, &o, &rep, &text, &err), BA_OK, "%s",
                     err.msg);
        cr_expect_eq(rep.named, f.m->nlayers);
        json_t *bc = json_loads(text, 0, NULL);
        cr_assert(bc);
        cr_expect_eq(json_object_size(bc), 2 * (size_t)f.m->nlayers);
        for (int li = 0; li < f.m->nlayers; li++) {
            char hn[64];
            snprintf(hn, sizeof hn, "q.layer%d.quant_convbn", li);
            cr_expect_eq(json_integer_value(json_object_get(bc, hn)), plan_bits(&f, li), "%s", hn);
            snprintf(hn, sizeof hn, "q.layer%d.quant_act", li);
            cr_expect_eq(json_integer_value(json_object_get(bc, hn)), 8, "%s", hn);
        }
        json_decref(bc);
        free(text);
        ba_namemap_free(map);
        ba_test_rmtree(dir);
        fix_free(&f);
    }
}

Test(export_consumers, name_map_files_are_checked) {
    char dir[512], p[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/m.csv", dir);
    ba_namemap_t *map;
    ba_error err;
    static const char *const bad[] = {"a,b\na,c\n", "a,b,c\n", "a,\n", "{\"a\": 1}", "{\"a\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(ba_test_write_file(p, bad[i]), 0);
        cr_expect_eq(ba_namemap_load(p, &map, &err), BA_ERR_INPUT, "%s", bad[i]);
        cr_expect(strstr(err.msg, p), "%s", err.msg);
    }
    cr_assert_eq(ba_test_write_file(p, "# c\r\n\"x,y\",\"m \"\"q\"\"\"\r\n\nz,w"), 0);
    cr_assert_eq(ba_namemap_load(p, &map, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(map->n, 2);
    cr_expect_str_eq(ba_namemap_get(map, "x,y"), "m \"q\"");
    cr_expect_str_eq(ba_namemap_get(map, "z"), "w");
    ba_namemap_free(map);
    snprintf(p, sizeof p, "%s/none.csv", dir);
    cr_expect_eq(ba_namemap_load(p, &map, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "--name-map"), "%s", err.msg);
    ba_test_rmtree(dir);
}
