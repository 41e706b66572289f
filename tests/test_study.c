/* study/: the table of methods, the one settings writer and reader (used by
 * search, resume and export alike), and the cached sensitivity call whose
 * failed cache write is a warning, never an error. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers.h"

#define DIGITS BA_FIXTURES "/digits/"
#define ZOO BA_FIXTURES "/zoo/"

Test(study, method_table_is_the_flag_choice_list_and_says_who_needs_omega) {
    char names[128] = "";
    for (int i = 0; i < ba_study_nmethods; i++) {
        if (i) strcat(names, "|");
        strcat(names, ba_study_methods[i].name);
        cr_expect(ba_study_methods[i].run, "%s has a runner", ba_study_methods[i].name);
    }
    cr_expect_str_eq(names, BA_STUDY_METHOD_NAMES);
    cr_expect(ba_study_method_find("ilp")->needs_sensitivity);
    cr_expect(ba_study_method_find("ilp+evo")->needs_sensitivity);
    cr_expect(!ba_study_method_find("evo")->needs_sensitivity);
    cr_expect(!ba_study_method_find("random")->needs_sensitivity);
    cr_expect(!ba_study_method_find("uniform")->needs_sensitivity);
    cr_expect(ba_study_method_find("nsga2")->needs_sensitivity, "nsga2 is seeded from the ILP sweep of Ω");
    cr_expect_null(ba_study_method_find("annealing"));
    ba_study_settings_t s;
    ba_study_settings_init(&s);
    snprintf(s.method, sizeof s.method, "uniform");
    cr_expect(!ba_study_needs_sensitivity(&s));
    s.has_sweep = 1; /* a sweep is ILP points */
    cr_expect(ba_study_needs_sensitivity(&s));
    ba_study_settings_free(&s);
}

Test(study, settings_round_trip_through_the_one_writer_and_reader) {
    ba_study_settings_t s, r;
    ba_error err;
    ba_study_settings_init(&s);
    cr_assert_eq(ba_study_settings_set_path(&s.model, "m.onnx", &err), BA_OK);
    cr_assert_eq(ba_study_settings_add_data(&s, "x=a.npy", &err), BA_OK);
    s.seed = UINT64_C(18446744073709551615); /* beyond int64: written as a string */
    s.include_embeddings = 1;
    s.quant.act_bits = 8;
    cr_assert_eq(ba_budget_set_add(&s.budgets, "memory=2KiB", &err), BA_OK, "%s", err.msg);
    snprintf(s.method, sizeof s.method, "evo");
    char *text = NULL;
    cr_assert_eq(ba_study_settings_to_json(&s, &text, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_study_settings_from_json(text, &r, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(r.seed, s.seed);
    cr_expect_eq(r.include_embeddings, 1);
    cr_expect_eq(r.quant.act_bits, 8);
    cr_expect_str_eq(r.method, "evo");
    cr_assert_eq(r.ndata, 1);
    cr_expect_str_eq(r.data[0], "x=a.npy");
    cr_assert_eq(r.budgets.n, 1);
    cr_expect_float_eq(r.budgets.items[0].limit, 2048, 0);
    cr_expect_eq(ba_study_plan_seed(&r), -1); /* a plan's seed is a signed integer: null */
    char *again = NULL;
    cr_assert_eq(ba_study_settings_to_json(&r, &again, &err), BA_OK);
    cr_expect_str_eq(again, text, "the reader keeps everything the writer wrote");
    free(again);
    free(text);
    ba_study_settings_free(&r);
    ba_study_settings_free(&s);
    /* An integer seed (hand-written settings) reads as well. */
    cr_assert_eq(
        ba_study_settings_from_json("{\"model\": \"m\", \"data\": [], \"method\": \"ilp\", \"bits\": [4],"
                                    " \"seed\": 3}",
                                    &r, &err),
        BA_OK, "%s", err.msg);
    cr_expect_eq(r.seed, 3);
    cr_expect_eq(ba_study_plan_seed(&r), 3);
    /* Settings from before --metric: no metric and no validation part. */
    cr_expect_str_eq(r.metric, "");
    cr_expect_float_eq(r.validation_fraction, 0, 0);
    ba_study_settings_free(&r);
}

Test(study, metric_validation_and_evaluator_settings_round_trip) {
    ba_study_settings_t s, r;
    ba_error err;
    ba_study_settings_init(&s);
    cr_expect_str_eq(s.metric, "auto");
    cr_expect_float_eq(s.validation_fraction, BA_STUDY_DEFAULT_VALIDATION_FRACTION, 0);
    cr_assert_eq(ba_study_settings_set_path(&s.model, "m.onnx", &err), BA_OK);
    snprintf(s.metric, sizeof s.metric, "mse");
    s.validation_fraction = 0.5;
    s.evaluator = strdup("python3 score.py");
    s.evaluator_timeout = 12.5;
    char *text = NULL;
    cr_assert_eq(ba_study_settings_to_json(&s, &text, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_study_settings_from_json(text, &r, &err), BA_OK, "%s", err.msg);
    cr_expect_str_eq(r.metric, "mse");
    cr_expect_float_eq(r.validation_fraction, 0.5, 0);
    cr_assert_not_null(r.evaluator);
    cr_expect_str_eq(r.evaluator, "python3 score.py");
    cr_expect_float_eq(r.evaluator_timeout, 12.5, 0);
    free(text);
    ba_study_settings_free(&r);
    ba_study_settings_free(&s);
    cr_expect_eq(
        ba_study_settings_from_json("{\"model\": \"m\", \"data\": [], \"method\": \"ilp\", \"bits\": [4],"
                                    " \"metric\": \"odd\"}",
                                    &r, &err),
        BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "metric"), "%s", err.msg);
}

Test(study, bad_settings_are_refused_naming_the_key) {
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"[1]", "not JSON"},
        {"{\"model\": \"m\", \"data\": [], \"method\": \"ilp\", \"bits\": [4], \"quantizer\": {\"scheme\": "
         "\"odd\"}}",
         "odd"},
        {"{\"model\": \"m\", \"data\": [], \"method\": \"ilp\", \"bits\": [4], \"quantizer\": {\"act_bits\": "
         "9}}",
         "act_bits"},
        {"{\"model\": \"m\", \"data\": [], \"method\": \"ilp\", \"bits\": [4], \"budgets\": {\"memory\": "
         "\"4\"}}",
         "budget"},
        {"{\"model\": \"m\", \"data\": [1], \"method\": \"ilp\", \"bits\": [4]}", "expected a string"},
        {"{\"data\": [], \"method\": \"ilp\", \"bits\": [4]}", "no model"},
        {"{", "not JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ba_study_settings_t s;
        ba_error err;
        cr_expect_eq(ba_study_settings_from_json(bad[i].json, &s, &err), BA_ERR_INPUT, "%s", bad[i].json);
        cr_expect(strstr(err.msg, bad[i].want), "%s: %s", bad[i].json, err.msg);
    }
}

Test(study, failed_cache_write_is_a_warning_and_the_table_stands) {
    char dir[512], db_path[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db_path, sizeof db_path, "%s/c.db", dir);
    ba_error err;
    ba_db_t *db;
    cr_assert_eq(ba_db_open(db_path, BA_DB_OPEN_CREATE, &db, &err), BA_OK, "%s", err.msg);
    ba_db_close(db);
    cr_assert_eq(ba_db_open(db_path, BA_DB_OPEN_READONLY, &db, &err), BA_OK, "%s", err.msg);
    ba_model_t *m;
    cr_assert_eq(ba_model_load(DIGITS "cnn.onnx", NULL, &m, &err), BA_OK, "%s", err.msg);
    ba_sens_opts_t o = ba_sens_opts_default();
    ba_sens_table_t *t = NULL;
    ba_study_sens_info_t info;
    cr_assert_eq(ba_study_sensitivity(db, m, NULL, NULL, 0, BA_SENS_WEIGHT, &o, &t, &info, &err), BA_OK, "%s",
                 err.msg);
    cr_expect(t && t->nlayers == m->nlayers);
    cr_expect(!info.cached);
    cr_expect(info.cache_write_failed);
    cr_expect(strstr(info.warning.msg, "sensitivity cache"), "%s", info.warning.msg);
    ba_sens_table_free(t);
    ba_db_close(db);
    /* A writable database: stored, then read back as cached. */
    cr_assert_eq(ba_db_open(db_path, BA_DB_OPEN_WRITE, &db, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_study_sensitivity(db, m, NULL, NULL, 0, BA_SENS_WEIGHT, &o, &t, &info, &err), BA_OK);
    cr_expect(!info.cache_write_failed && !info.cached);
    ba_sens_table_free(t);
    cr_assert_eq(ba_study_sensitivity(db, m, NULL, NULL, 0, BA_SENS_WEIGHT, &o, &t, &info, &err), BA_OK);
    cr_expect(info.cached);
    ba_sens_table_free(t);
    ba_db_close(db);
    ba_model_free(m);
    ba_test_rmtree(dir);
}

/* export reads the settings `search` wrote: the seed (stored as a string) and
 * --include-embeddings (stored as include_embeddings) come back. */
static json_t *export_plan(const char *db, const char *study, const char *out) {
    ba_test_run_t r =
        ba_test_cli("--db", db, "-q", "export", "--study", study, "--format", "plan", "-o", out, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    cr_assert(j, "%s", je.text);
    return j;
}

Test(study, export_plan_carries_the_seed_search_stored, .timeout = 60) {
    char dir[512], db[600], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(out, sizeof out, "%s/plan.json", dir);
    ba_test_run_t r = ba_test_cli("--db", db, "-q", "search", DIGITS "cnn_dyn.onnx", "--data",
                                  DIGITS "calib_x.npy", "--method", "uniform", "--budget", "avg-bits=4",
                                  "--seed", "7", "--study", "s", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    json_t *j = export_plan(db, "s", out);
    json_t *seed = json_object_get(json_object_get(j, "search"), "seed");
    cr_expect(json_is_integer(seed) && json_integer_value(seed) == 7, "seed: %s",
              seed ? (json_is_null(seed) ? "null" : "not 7") : "absent");
    json_decref(j);
    ba_test_rmtree(dir);
}

Test(study, export_of_an_include_embeddings_study_counts_the_embeddings, .timeout = 60) {
    char dir[512], db[600], out[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    snprintf(out, sizeof out, "%s/plan.json", dir);
    ba_test_run_t r = ba_test_cli("--db", db, "-q", "search", ZOO "gpt_dyn.onnx", "--data",
                                  ZOO "calib_tokens.npy", "--include-embeddings", "--method", "uniform",
                                  "--budget", "avg-bits=8", "--study", "g", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *sj = json_loads(r.out, 0, &je);
    cr_assert(sj, "%s", r.out);
    size_t searched = json_array_size(json_object_get(json_object_get(sj, "plan"), "layers"));
    ba_test_run_free(&r);
    json_t *j = export_plan(db, "g", out);
    json_t *layers = json_object_get(j, "layers");
    cr_expect_eq(json_array_size(layers), searched);
    int gathers = 0;
    for (size_t i = 0; i < json_array_size(layers); i++) {
        const char *op = json_string_value(json_object_get(json_array_get(layers, i), "op"));
        gathers += op && !strcmp(op, "Gather");
    }
    cr_expect_eq(gathers, 1, "the token embedding is a layer of the exported plan");
    json_decref(sj);
    json_decref(j);
    ba_test_rmtree(dir);
}

Test(study, estimator_names_are_the_flag_choice_list) {
    char names[128] = "";
    for (int m = BA_SENS_HESSIAN; m <= BA_SENS_MEASURED; m++) {
        if (m) strcat(names, "|");
        strcat(names, ba_sens_method_name((ba_sens_method_t)m));
    }
    cr_expect_str_eq(names, BA_SENS_METHOD_NAMES);
}
