/* `bitalloc llm-search`, `resume`, `trials`, `export --format llama` and `llm-quantize` on the
 * tiny trained llama: the evolution's KL is no worse than its ILP seed's and than uniform q4_K at
 * the same average width, the same study twice gives the same result, the exported file has one
 * anchored pattern per tensor, and the quantized GGUF has exactly the planned types and bytes.
 * Skipped when the llama.cpp libraries are not installed, except the messages that name them. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/ggml_types.h"
#include "core/util.h"
#include "db/db.h"
#include "helpers.h"
#include "llm/gguf.h"
#include "llm/kl.h"
#include "llm_fixture.h"
#include "study/llm_study.h"

typedef struct {
    char dir[512], db[600];
} fx_t;

static void fx_init(fx_t *f) {
    BA_TEST_LLAMA_OR_SKIP();
    setenv(BA_LLAMA_DIR_ENV, ba_test_llama_dir(), 1);
    cr_assert_eq(ba_test_tmpdir(f->dir, sizeof f->dir), 0);
    snprintf(f->db, sizeof f->db, "%s/s.db", f->dir);
}

static json_t *search(const fx_t *f, const char *study, const char *budget, const char *method) {
    ba_test_run_t r = ba_test_cli("--db", f->db, "-q", "llm-search", TINY_GGUF, "--text", CALIB_TXT,
                                  "--budget", budget, "--study", study, "--method", method, "--generations",
                                  "3", "--offspring", "4", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    cr_assert(j, "%s: %s", je.text, r.out);
    ba_test_run_free(&r);
    return j;
}

static double num(json_t *j, const char *k) {
    return json_number_value(json_object_get(j, k));
}

/* kl of trial `number` of a study, through `trials --format json`. */
static double trial_kl(const fx_t *f, const char *study, int number) {
    ba_test_run_t r = ba_test_cli("--db", f->db, "trials", "--study", study, "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = json_loads(r.out, 0, NULL);
    cr_assert(j);
    json_t *rows = json_is_array(j) ? j : json_object_get(j, "trials");
    double kl = NAN;
    size_t i;
    json_t *t;
    json_array_foreach(rows, i, t) {
        if (json_integer_value(json_object_get(t, "number")) == number) kl = num(t, "kl");
    }
    json_decref(j);
    ba_test_run_free(&r);
    return kl;
}

Test(llm_search, evolution_beats_seed_and_uniform_and_repeats, .timeout = 240) {
    fx_t f;
    fx_init(&f);
    json_t *a = search(&f, "a", "avg-bits=4.5", "ilp+evo");
    json_t *u = search(&f, "u", "avg-bits=4.5", "uniform");
    double kl = num(a, "kl"), seed = trial_kl(&f, "a", 1), uni = num(u, "kl");
    fprintf(stderr, "tiny llama at 4.5 bits: uniform %.6g, ILP seed %.6g, ilp+evo %.6g (%g bits, %.0f B)\n",
            uni, seed, kl, num(a, "avg_bits"), num(a, "bytes"));
    cr_expect(kl > 0 && kl <= seed && kl <= uni, "kl %g seed %g uniform %g", kl, seed, uni);
    cr_expect(num(a, "avg_bits") <= 4.5, "%g", num(a, "avg_bits"));
    cr_expect_eq(json_object_size(json_object_get(a, "types")), 15);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(u, "types"), "blk.0.ffn_up.weight")),
                     "q4_K");
    /* Multi-fidelity on 10 chunks of 128 tokens: offspring are first ranked on 2 chunks (256 tokens)
     * and the rest pruned there (with 4 offspring the 5-chunk stage has nothing to prune). */
    ba_test_run_t tr = ba_test_cli("--db", f.db, "trials", "--study", "a", "--format", "json", NULL);
    cr_assert_eq(tr.status, 0, "%s", tr.err);
    json_t *rows = json_loads(tr.out, 0, NULL);
    size_t ti;
    json_t *row;
    int low = 0, mid = 0;
    json_array_foreach(rows, ti, row) {
        if (strcmp(json_string_value(json_object_get(row, "state")), "pruned")) continue;
        json_int_t ns = json_integer_value(json_object_get(row, "samples"));
        low += ns == 2;
        mid += ns == 5;
    }
    cr_expect(low > 0 && mid == 0, "pruned on 2 chunks: %d, on 5: %d", low, mid);
    json_decref(rows);
    ba_test_run_free(&tr);
    /* The same search in another study: the same trials, the same result. */
    json_t *b = search(&f, "b", "avg-bits=4.5", "ilp+evo");
    cr_expect_eq(num(b, "kl"), kl);
    cr_expect(json_equal(json_object_get(a, "types"), json_object_get(b, "types")));
    cr_expect_eq(json_integer_value(json_object_get(a, "trial")),
                 json_integer_value(json_object_get(b, "trial")));
    /* resume of a finished study reports it again, measuring nothing. */
    ba_test_run_t r = ba_test_cli("--db", f.db, "resume", "--study", "a", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *c = json_loads(r.out, 0, NULL);
    cr_expect_eq(num(c, "kl"), kl);
    cr_expect_eq(json_integer_value(json_object_get(c, "evaluations")), 0);
    json_decref(c);
    ba_test_run_free(&r);
    /* Asking for the same study again continues it (here: reports it); other settings are refused. */
    r = ba_test_cli("--db", f.db, "-q", "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget",
                    "avg-bits=4", "--study", "a", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "exists with other settings"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "studies", NULL);
    cr_expect(r.status == 0 && strstr(r.out, "tiny.gguf"), "%s", r.out);
    ba_test_run_free(&r);
    json_decref(a);
    json_decref(b);
    json_decref(u);
    ba_test_rmtree(f.dir);
}

Test(llm_search, export_and_quantize_give_the_planned_gguf, .timeout = 240) {
    fx_t f;
    fx_init(&f);
    json_t *a = search(&f, "m", "memory=700KiB", "ilp+evo");
    double bytes = num(a, "bytes");
    cr_expect(bytes <= 700 * 1024, "%g", bytes);
    char tt[700], q[700];
    snprintf(tt, sizeof tt, "%s/types.txt", f.dir);
    snprintf(q, sizeof q, "%s/q.gguf", f.dir);
    ba_test_run_t r =
        ba_test_cli("--db", f.db, "export", "--study", "m", "--format", "llama", "-o", tt, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "llama-quantize --tensor-type-file ") && strstr(r.out, "tiny.gguf") &&
                  strstr(r.out, " Q8_0\n"),
              "%s", r.out);
    ba_test_run_free(&r);
    FILE *fp = fopen(tt, "r");
    cr_assert(fp);
    char line[256];
    int nlines = 0;
    json_t *types = json_object_get(a, "types");
    while (fgets(line, sizeof line, fp)) {
        nlines++;
        /* ^blk\.0\.attn_q\.weight$=q4_k: anchored, escaped, lowercase. */
        char *eq = strstr(line, "$=");
        cr_assert(line[0] == '^' && eq, "%s", line);
        char name[128] = "";
        size_t o = 0;
        for (char *p = line + 1; p < eq && o + 1 < sizeof name; p++)
            if (*p != '\\') name[o++] = *p;
        name[o] = 0;
        const char *want = json_string_value(json_object_get(types, name));
        cr_assert(want, "%s", name);
        char lower[16];
        size_t k = 0;
        for (; want[k] && k + 1 < sizeof lower; k++)
            lower[k] = (char)(want[k] >= 'A' && want[k] <= 'Z' ? want[k] + 32 : want[k]);
        lower[k] = 0;
        eq[2 + strcspn(eq + 2, "\n")] = 0;
        cr_expect_str_eq(eq + 2, lower, "%s", name);
    }
    fclose(fp);
    cr_expect_eq(nlines, 15);

    r = ba_test_cli("--db", f.db, "-q", "llm-quantize", "--study", "m", "-o", q, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    ba_gguf_t *g;
    ba_error err = {0};
    cr_assert_eq(ba_gguf_open(q, &g, &err), BA_OK, "%s", err.msg);
    uint64_t sum = 0, padded = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const ba_gguf_tensor_t *x = &g->tensors[i];
        const char *want = json_string_value(json_object_get(types, x->name));
        if (want)
            cr_expect_str_eq(ba_ggml_type_by_id(x->type)->name, want, "%s", x->name);
        else
            cr_expect(!ba_ggml_tensor_quantizable(x->name, x->n_dims) && x->type == 0, "%s", x->name);
        sum += x->nbytes;
        padded += (x->nbytes + g->alignment - 1) / g->alignment * g->alignment;
    }
    cr_expect_eq((double)sum, bytes, "the tensors hold exactly the plan's bytes");
    struct stat sb;
    cr_assert_eq(stat(q, &sb), 0);
    cr_expect_eq((uint64_t)sb.st_size, g->data_offset + padded, "file = header + tensors padded to %u",
                 g->alignment);
    cr_expect((uint64_t)sb.st_size - sum < g->data_offset + (uint64_t)g->n_tensors * g->alignment);
    ba_gguf_free(g);
    json_decref(a);
    ba_test_rmtree(f.dir);
}

/* Mix seeds: at the Q4_K_M mix's own bytes, `auto` makes that mix trial 2 (the ILP plan is trial 1),
 * measured like any trial (its KL is that of the GGUF llama_model_quantize writes for the mix), and
 * the result is no worse than it; with `none` no trial is the mix; a named mix that breaks the
 * budget, a name that is no mix, and a mix seed with another method are refused; a study stored
 * without the setting reads as `none`. */
Test(llm_search, mix_seed_is_a_trial_and_bounds_the_result, .timeout = 300) {
    fx_t f;
    fx_init(&f);
    const ba_llama_t *ll = ba_test_llama_open();
    ba_error err = {0};
    char mix[700], budget[64];
    snprintf(mix, sizeof mix, "%s/q4km.gguf", f.dir);
    cr_assert_eq(ba_llama_quantize_mix(ll, TINY_GGUF, mix, "Q4_K_M", 1, NULL, &err), BA_OK, "%s", err.msg);
    ba_gguf_t *q, *g;
    cr_assert_eq(ba_gguf_open(mix, &q, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_gguf_open(TINY_GGUF, &g, &err), BA_OK, "%s", err.msg);
    uint64_t bytes = 0;
    for (int i = 0; i < q->n_tensors; i++) bytes += q->tensors[i].nbytes;
    snprintf(budget, sizeof budget, "memory=%llu", (unsigned long long)bytes);
    json_t *a = search(&f, "a", budget, "ilp+evo");
    json_t *seeds = json_object_get(a, "seeds");
    cr_assert_eq(json_array_size(seeds), 2, "%s", json_dumps(a, 0));
    json_t *m = json_array_get(seeds, 1);
    cr_expect_str_eq(json_string_value(json_object_get(m, "name")), "Q4_K_M");
    cr_expect_eq(json_integer_value(json_object_get(m, "trial")), 2);
    cr_expect_eq(num(m, "bytes"), (double)bytes);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(seeds, 0), "name")), "ilp");
    /* Trial 2's types are the mix's, its KL the mix file's. */
    ba_db_t *db;
    cr_assert_eq(ba_db_open(f.db, BA_DB_OPEN_READONLY, &db, &err), BA_OK, "%s", err.msg);
    ba_llm_settings_t s;
    char **names;
    int *types, n;
    int64_t number;
    cr_assert_eq(ba_llm_study_trial(db, "a", 2, &s, &number, &names, &types, &n, &err), BA_OK, "%s", err.msg);
    for (int l = 0; l < n; l++) {
        cr_expect_eq(types[l], ba_gguf_find_tensor(q, names[l])->type, "%s", names[l]);
        free(names[l]);
    }
    free(names);
    free(types);
    ba_llm_settings_free(&s);
    ba_db_close(db);
    char *text;
    size_t len;
    cr_assert_eq(ba_file_read(CALIB_TXT, (uint8_t **)&text, &len, &err), BA_OK);
    ba_llm_kl_t *k;
    cr_assert_eq(ba_llm_kl_new(ll, g, text, BA_LLM_DEFAULT_CHUNK, 1, &k, &err), BA_OK, "%s", err.msg);
    double kl, agree;
    cr_assert_eq(ba_llm_kl_measure(k, mix, 0, ba_llm_kl_nchunks(k), &kl, &agree, &err), BA_OK, "%s", err.msg);
    cr_expect_eq(trial_kl(&f, "a", 2), kl, "trial 2 %g, the mix's GGUF %g", trial_kl(&f, "a", 2), kl);
    cr_expect_float_eq(num(m, "kl"), kl, 1e-12 + kl * 1e-9);
    cr_expect_leq(num(a, "kl"), kl);
    cr_expect_leq(num(a, "bytes"), (double)bytes);
    ba_llm_kl_free(k);
    free(text);
    /* none: the evolution starts from the ILP plan alone. */
    ba_test_run_t r = ba_test_cli("--db", f.db, "-q", "llm-search", TINY_GGUF, "--text", CALIB_TXT,
                                  "--budget", budget, "--study", "b", "--mix-seed", "none", "--generations",
                                  "3", "--offspring", "4", "--format", "json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *b = json_loads(r.out, 0, NULL);
    cr_expect_eq(json_array_size(json_object_get(b, "seeds")), 1);
    cr_expect_neq(trial_kl(&f, "b", 2), kl);
    json_decref(b);
    ba_test_run_free(&r);
    /* Refusals. */
    r = ba_test_cli("--db", f.db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget", budget,
                    "--mix-seed", "Q5_K_M", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--mix-seed Q5_K_M: its") && strstr(r.err, "break the budget"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget", budget,
                    "--mix-seed", "Q4_K_M,Q4_K_Z", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--mix-seed: 'Q4_K_Z' is not"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget", budget,
                    "--mix-seed", "Q4_K_S", "--method", "evo", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "only --method ilp+evo"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget", budget, "--types",
                    "q4_K,q5_K,q8_0", "--mix-seed", "Q4_K_M", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "q6_K, which is not among its candidates"), "%s", r.err);
    ba_test_run_free(&r);
    json_decref(a);
    ba_gguf_free(q);
    ba_gguf_free(g);
    ba_test_rmtree(f.dir);
}

Test(llm_search, infeasible_budget_and_bad_types) {
    fx_t f;
    fx_init(&f);
    ba_test_run_t r = ba_test_cli("--db", f.db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget",
                                  "avg-bits=2.5", NULL);
    cr_expect_eq(r.status, 3, "%s", r.err);
    cr_expect(strstr(r.err, "avg-bits"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget", "avg-bits=4",
                    "--types", "q4_0,q8_0", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--types: 'q4_0'"), "%s", r.err);
    ba_test_run_free(&r);
    /* A quantized checkpoint is not a reference. */
    char q8[700];
    snprintf(q8, sizeof q8, "%s/q8.gguf", f.dir);
    ba_error err = {0};
    cr_assert_eq(ba_llama_quantize_mix(ba_test_llama_open(), TINY_GGUF, q8, "Q8_0", 1, NULL, &err), BA_OK,
                 "%s", err.msg);
    r = ba_test_cli("--db", f.db, "llm-search", q8, "--text", CALIB_TXT, "--budget", "avg-bits=4", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "tensor 'token_embd.weight' is stored as q8_0"), "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget", "bops=1G", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--budget bops=1G"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(f.dir);
}

Test(llm_search, names_missing_libraries) {
    char dir[512], db[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    setenv(BA_LLAMA_DIR_ENV, "/nonexistent/bins", 1);
    ba_test_run_t r =
        ba_test_cli("--db", db, "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget", "avg-bits=4", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "cannot load libggml-base.so") &&
                  strstr(r.err, "@node-llama-cpp/linux-x64@3.22.1"),
              "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(dir);
}

Test(llm_search, docs_name_every_flag_that_help_prints) {
    static const char *const cmds[] = {"llm-imatrix", "llm-sensitivity", "llm-search", "llm-quantize", NULL};
    for (int i = 0; cmds[i]; i++) {
        ba_test_run_t r = ba_test_cli(cmds[i], "--help", NULL);
        cr_assert_eq(r.status, 0);
        char path[512];
        snprintf(path, sizeof path, "%s/docs/%s.md", BA_SOURCE_DIR, cmds[i]);
        uint8_t *doc = NULL;
        size_t size;
        ba_error err;
        cr_assert_eq(ba_file_read(path, &doc, &size, &err), BA_OK, "%s", err.msg);
        for (const char *p = strstr(r.out, "--"); p; p = strstr(p + 2, "--")) {
            char flag[64];
            size_t n = 2;
            while (n < sizeof flag - 1 && (p[n] == '-' || (p[n] >= 'a' && p[n] <= 'z'))) n++;
            memcpy(flag, p, n);
            flag[n] = '\0';
            if (n > 2) cr_expect(strstr((const char *)doc, flag), "docs/%s.md lacks %s", cmds[i], flag);
        }
        free(doc);
        ba_test_run_free(&r);
    }
}

/* Starts argv (stdout/stderr to /dev/null), SIGKILLs it after delay_s unless it finished first.
 * Returns its exit code, or -SIGKILL when killed. */
static int run_and_kill(const char *const *argv, double delay_s) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE *n = freopen("/dev/null", "w", stdout);
        FILE *e = freopen("/dev/null", "w", stderr);
        (void)n, (void)e;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int ws = 0;
    for (double waited = 0; waited < delay_s; waited += 0.002) {
        if (waitpid(pid, &ws, WNOHANG) == pid) return WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
        usleep(2000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &ws, 0);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
}

static void trials_of(const char *dbpath, ba_trial_t **t, int *n) {
    ba_db_t *db;
    ba_error err;
    cr_assert_eq(ba_db_open(dbpath, 0, &db, &err), BA_OK, "%s", err.msg);
    ba_study_info_t info;
    cr_assert_eq(ba_db_study_get(db, "k", &info, &err), BA_OK, "%s", err.msg);
    cr_expect_str_eq(info.state, "complete");
    ba_trial_query_t q = {0};
    cr_assert_eq(ba_db_trials_query(db, info.id, &q, t, n, &err), BA_OK, "%s", err.msg);
    ba_db_study_info_free(&info);
    ba_db_close(db);
}

Test(llm_search, killed_search_resumes_to_the_uninterrupted_result, .timeout = 300) {
    fx_t f;
    fx_init(&f);
    char ref[700];
    snprintf(ref, sizeof ref, "%s/ref.db", f.dir);
    setenv("TMPDIR", f.dir, 1); /* a killed run's private folder goes with the test's */
    const char *argv[] = {
        BA_CLI,          "--db",     ref,           "-q",      "llm-search", TINY_GGUF, "--text",
        CALIB_TXT,       "--budget", "avg-bits=4",  "--study", "k",          "--seed",  "7",
        "--generations", "3",        "--offspring", "3",       "--chunk",    "128",     NULL};
    int rc0 = run_and_kill(argv, 1e9);
    cr_assert_eq(rc0, 0, "rc %d", rc0);
    argv[2] = f.db;
    const char *resume[] = {BA_CLI, "--db", f.db, "-q", "resume", "--study", "k", NULL};
    int kills = 0, rc = -SIGKILL;
    double delay = 1.5;
    rc = run_and_kill(argv, delay);
    kills += rc == -SIGKILL;
    for (int i = 0; rc == -SIGKILL && i < 30; i++, delay += 0.6) {
        /* Killed before the study existed: the same search again; else resume. */
        rc = run_and_kill(resume, delay);
        if (rc == 2) rc = run_and_kill(argv, delay);
        kills += rc == -SIGKILL;
    }
    cr_assert_eq(rc, 0, "rc %d", rc);
    cr_expect_geq(kills, 1);
    ba_trial_t *a, *b;
    int na, nb;
    trials_of(ref, &a, &na);
    trials_of(f.db, &b, &nb);
    cr_expect_eq(na, nb);
    for (int i = 0; i < na && i < nb; i++) {
        cr_expect_str_eq(a[i].state, b[i].state, "trial %d", i);
        cr_expect(a[i].kl == b[i].kl, "trial %d: kl %.17g vs %.17g", i, a[i].kl, b[i].kl);
        cr_expect_eq(a[i].nlayers, b[i].nlayers);
        for (int l = 0; l < a[i].nlayers && l < b[i].nlayers; l++)
            cr_expect_eq(a[i].w_bits[l], b[i].w_bits[l]);
    }
    fprintf(stderr, "llm-search killed %d times, resumed to the same %d trials\n", kills, nb);
    ba_db_trials_free(a, na);
    ba_db_trials_free(b, nb);
    ba_test_rmtree(f.dir);
}

/* An LLM study's settings round-trip through JSON; damaged settings are refused, never trusted. */
Test(llm_search, settings_json_round_trip_and_damage) {
    ba_llm_settings_t s, t;
    ba_error err = {0};
    ba_llm_settings_init(&s);
    s.model = strdup("/m/tiny.gguf");
    s.text = strdup("/m/calib.txt");
    cr_assert_eq(ba_budget_set_add(&s.budgets, "avg-bits=4.25", &err), BA_OK);
    cr_assert_eq(ba_budget_set_add(&s.budgets, "memory=1MiB", &err), BA_OK);
    cr_assert_eq(ba_llm_settings_set_types(&s, "q3_K,q4_K,q8_0", &err), BA_OK, "%s", err.msg);
    s.seed = UINT64_MAX;
    s.generations = 0;
    char *j, *j2;
    cr_assert_eq(ba_llm_settings_to_json(&s, &j, &err), BA_OK);
    cr_expect(ba_llm_settings_is_llm(j));
    cr_assert_eq(ba_llm_settings_from_json(j, &t, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_llm_settings_to_json(&t, &j2, &err), BA_OK);
    cr_expect_str_eq(j, j2);
    cr_expect_eq(t.seed, UINT64_MAX);
    cr_expect_eq(t.ntypes, 3);
    cr_expect_eq(t.budgets.n, 2);
    cr_expect_str_eq(t.mix_seed, "auto");
    cr_expect_eq(t.low_fidelity_tokens, BA_LLM_DEFAULT_LOW_FIDELITY_TOKENS);
    free(j2);
    ba_llm_settings_free(&t);
    /* A study stored before mix seeds: none (it started from the ILP plan alone). */
    const char *old_json = "{\"kind\": \"llm\", \"model\": \"/m\", \"text\": \"/t\", \"types\": [\"q4_K\"], "
                           "\"method\": \"ilp+evo\", \"seed\": \"0\", \"generations\": 1, \"offspring\": 1, "
                           "\"chunk\": 8, \"threads\": 1}";
    cr_assert_eq(ba_llm_settings_from_json(old_json, &t, &err), BA_OK, "%s", err.msg);
    cr_expect_str_eq(t.mix_seed, "none");
    cr_expect_eq(t.low_fidelity_tokens, 0);
    ba_llm_settings_free(&t);
    cr_expect_eq(ba_llm_settings_set_mix_seed(&s, "Q4_K_M,Q5_K_S", &err), BA_OK, "%s", err.msg);
    cr_expect_eq(ba_llm_settings_set_mix_seed(&s, "Q4_K_M,", &err), BA_ERR_INPUT);
    cr_expect_eq(ba_llm_settings_set_mix_seed(&s, "q4_k_m", &err), BA_ERR_INPUT);
    static const char *const bad[] = {
        "",
        "{}",
        "[1]",
        "{\"kind\": \"llm\"}",
        "{\"kind\": \"onnx\", \"model\": \"/m\"}",
        "{\"kind\": \"llm\", \"model\": \"/m\", \"text\": \"/t\", \"types\": [\"q4_0\"], \"method\": "
        "\"ilp\", "
        "\"seed\": \"0\", \"generations\": 1, \"offspring\": 1, \"chunk\": 8, \"threads\": 1}",
        "{\"kind\": \"llm\", \"model\": \"/m\", \"text\": \"/t\", \"types\": [\"q4_K\"], \"method\": "
        "\"magic\", "
        "\"seed\": \"0\", \"generations\": 1, \"offspring\": 1, \"chunk\": 8, \"threads\": 1}",
        "{\"kind\": \"llm\", \"model\": \"/m\", \"text\": \"/t\", \"types\": [\"q4_K\"], \"method\": "
        "\"ilp\", "
        "\"seed\": \"0\", \"generations\": 1, \"offspring\": 0, \"chunk\": 8, \"threads\": 1}",
        "{\"kind\": \"llm\", \"model\": \"/m\", \"text\": \"/t\", \"types\": [\"q4_K\"], \"method\": "
        "\"ilp\", "
        "\"seed\": \"0\", \"generations\": 1, \"offspring\": 1, \"chunk\": 8, \"threads\": 1, \"budgets\": "
        "{\"speed\": 3}}",
        "{\"kind\": \"llm\", \"model\": \"/m\", \"text\": \"/t\", \"types\": [\"q4_K\"], \"method\": "
        "\"ilp\", \"seed\": \"0\", \"generations\": 1, \"offspring\": 1, \"chunk\": 8, \"threads\": 1, "
        "\"mix_seed\": \"Q9_K\"}",
        NULL};
    for (int i = 0; bad[i]; i++) {
        cr_expect_eq(ba_llm_settings_from_json(bad[i], &t, &err), BA_ERR_INPUT, "%s", bad[i]);
    }
    free(j);
    ba_llm_settings_free(&s);
}

static float cycling_weight(int e, int j) {
    (void)e;
    return 1.0f + (float)(j % 5);
}

/* With --imatrix: the study records it, export prints it in the llama-quantize line, llm-quantize
 * uses it, and a changed imatrix is refused on resume. */
Test(llm_search, imatrix_goes_through_to_export_and_quantize, .timeout = 120) {
    fx_t f;
    fx_init(&f);
    char dat[700], tt[700], q[700];
    snprintf(dat, sizeof dat, "%s/imatrix.dat", f.dir);
    snprintf(tt, sizeof tt, "%s/types.txt", f.dir);
    snprintf(q, sizeof q, "%s/q.gguf", f.dir);
    const char *name = "blk.0.ffn_down.weight";
    ba_test_write_imatrix_dat(dat, 1, &name, 512, cycling_weight); /* n_ff columns */
    ba_test_run_t r =
        ba_test_cli("--db", f.db, "-q", "llm-search", TINY_GGUF, "--text", CALIB_TXT, "--budget",
                    "avg-bits=4", "--imatrix", dat, "--study", "i", "--method", "ilp", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "-q", "export", "--study", "i", "--format", "llama", "-o", tt, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "llama-quantize --imatrix ") && strstr(r.out, "imatrix.dat --tensor-type-file "),
              "%s", r.out);
    ba_test_run_free(&r);
    r = ba_test_cli("--db", f.db, "-q", "llm-quantize", "--study", "i", "-o", q, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    ba_test_run_free(&r);
    /* The imatrix changes: resume refuses. */
    FILE *fp = fopen(dat, "r+b");
    cr_assert(fp);
    fseek(fp, -4, SEEK_END);
    float w = 9.0f;
    fwrite(&w, 4, 1, fp);
    fclose(fp);
    r = ba_test_cli("--db", f.db, "resume", "--study", "i", NULL);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "the imatrix changed since study 'i' started"), "%s", r.err);
    ba_test_run_free(&r);
    ba_test_rmtree(f.dir);
}
