/* search/budget, problem pins/ties, latency sources: SPEC §4 units and the
 * bad inputs each must refuse with a message naming what is wrong. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "search/budget.h"
#include "search/hw.h"
#include "search/ilp.h"
#include "search/problem.h"
#include "tests/helpers.h"

static double parse_ok(const char *spec, ba_budget_kind_t want_kind) {
    ba_budget_t b;
    ba_error err;
    cr_assert_eq(ba_budget_parse(spec, &b, &err), BA_OK, "%s: %s", spec, err.msg);
    cr_assert_eq(b.kind, want_kind, "%s", spec);
    return b.limit;
}

static void parse_bad(const char *spec, const char *needle) {
    ba_budget_t b;
    ba_error err;
    cr_assert_eq(ba_budget_parse(spec, &b, &err), BA_ERR_INPUT, "%s should be refused", spec);
    cr_assert(strstr(err.msg, needle), "%s: message '%s' lacks '%s'", spec, err.msg, needle);
}

Test(budget, values_parse_into_canonical_units) {
    cr_assert_eq(parse_ok("avg-bits=4", BA_BUDGET_AVG_BITS), 4.0);
    cr_assert_eq(parse_ok("avg-bits=3.25", BA_BUDGET_AVG_BITS), 3.25);
    cr_assert_eq(parse_ok("memory=512B", BA_BUDGET_MEMORY), 512.0);
    cr_assert_eq(parse_ok("memory=1.5KiB", BA_BUDGET_MEMORY), 1536.0);
    cr_assert_eq(parse_ok("memory=4MiB", BA_BUDGET_MEMORY), 4.0 * 1048576);
    cr_assert_eq(parse_ok("memory=2 GiB", BA_BUDGET_MEMORY), 2.0 * 1073741824);
    cr_assert_eq(parse_ok("memory=4096", BA_BUDGET_MEMORY), 4096.0); /* a bare number is bytes */
    cr_assert_eq(parse_ok("bops=1.5e9", BA_BUDGET_BOPS), 1.5e9);
    cr_assert_eq(parse_ok("bops=2G", BA_BUDGET_BOPS), 2e9);
    cr_assert_eq(parse_ok("bops=300", BA_BUDGET_BOPS), 300.0);
    cr_assert_eq(parse_ok("latency=250us", BA_BUDGET_LATENCY), 250.0);
    cr_assert_eq(parse_ok("latency=250\xc2\xb5s", BA_BUDGET_LATENCY), 250.0);
    cr_assert_eq(parse_ok("latency=1.5ms", BA_BUDGET_LATENCY), 1500.0);
    cr_assert_eq(parse_ok("latency=300", BA_BUDGET_LATENCY), 300.0); /* a bare number is µs */
    cr_assert_eq(parse_ok("bops=3k", BA_BUDGET_BOPS), 3e3);
}

Test(budget, bad_values_are_refused_with_the_reason) {
    parse_bad("speed=3", "unknown budget key");
    parse_bad("avg-bits", "KEY=VALUE");
    parse_bad("avg-bits=-4", "negative");
    parse_bad("avg-bits=0", "greater than zero");
    parse_bad("avg-bits=nan", "not a number");
    parse_bad("avg-bits=inf", "not a number");
    parse_bad("avg-bits=", "not a number");
    parse_bad("avg-bits=4bits", "unknown unit");
    parse_bad("memory=3MB", "unknown unit 'MB' in '3MB' (units: B, KiB, MiB, GiB; a bare number is bytes)");
    parse_bad("memory=7kib", "unknown unit 'kib'");
    parse_bad("avg-bits=33", "at most 32");
    parse_bad("memory=-1MiB", "negative");
    parse_bad("memory=4XB", "unknown unit");
    parse_bad("latency=2s",
              "unknown unit 's' in '2s' (units: us, \xc2\xb5s, ms; a bare number is microseconds)");
    parse_bad("latency=3h", "unknown unit");
    parse_bad("bops=1e400", "out of range");
    parse_bad("bops=0x10", "unknown unit");
}

Test(budget, several_budgets_hold_at_once_but_not_a_key_twice) {
    ba_budget_set_t set = {0};
    ba_error err;
    cr_assert_eq(ba_budget_set_add(&set, "avg-bits=4", &err), BA_OK);
    cr_assert_eq(ba_budget_set_add(&set, "memory=2MiB", &err), BA_OK);
    cr_assert_eq(ba_budget_set_add(&set, "latency=1ms", &err), BA_OK);
    cr_assert_eq(set.n, 3);
    cr_assert_eq(ba_budget_set_find(&set, BA_BUDGET_LATENCY), 2);
    cr_assert_eq(ba_budget_set_find(&set, BA_BUDGET_BOPS), -1);
    cr_assert_eq(ba_budget_set_add(&set, "avg-bits=5", &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "twice"), "%s", err.msg);
}

Test(budget, sweep_parses_units_and_counts_points) {
    ba_budget_sweep_t s;
    ba_error err;
    cr_assert_eq(ba_budget_sweep_parse("avg-bits=2:4:0.1", &s, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_budget_sweep_npoints(&s), 21);
    cr_assert_eq(ba_budget_sweep_parse("memory=1MiB:4MiB:256KiB", &s, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(s.from, 1048576.0);
    cr_assert_eq(ba_budget_sweep_npoints(&s), 13);
    cr_assert_eq(ba_budget_sweep_parse("memory=1000:4KiB:1000", &s, &err), BA_OK, "%s", err.msg); /* bytes */
    cr_assert_eq(s.to, 4096.0);
    cr_assert_eq(ba_budget_sweep_parse("memory=1MB:4MB:1MB", &s, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "unknown unit 'MB'"), "%s", err.msg);
    cr_assert_eq(ba_budget_sweep_parse("avg-bits=4:2:0.5", &s, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_budget_sweep_parse("avg-bits=2:4", &s, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_budget_sweep_parse("avg-bits=2:4:0", &s, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_budget_sweep_parse("avg-bits=1:1e9:1e-3", &s, &err), BA_ERR_INPUT);
}

Test(budget, format_names_units) {
    char buf[96];
    ba_budget_format(BA_BUDGET_MEMORY, 1572864, buf, sizeof buf);
    cr_assert_str_eq(buf, "1.500 MiB (1572864 B)");
    ba_budget_format(BA_BUDGET_LATENCY, 250, buf, sizeof buf);
    cr_assert_str_eq(buf, "250 us");
}

Test(budget, bits_list_parses_sorted_and_checked) {
    int bits[BA_BITS_MAX_CANDIDATES], n;
    ba_error err;
    cr_assert_eq(ba_bits_parse(BA_BITS_DEFAULT, bits, &n, &err), BA_OK);
    cr_assert_eq(n, 6);
    cr_assert_eq(ba_bits_parse("8,2,4,16", bits, &n, &err), BA_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(bits[0], 2);
    cr_assert_eq(bits[3], 16);
    cr_assert_eq(ba_bits_parse("2,9", bits, &n, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_bits_parse("2,2", bits, &n, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_bits_parse("2,", bits, &n, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_bits_parse("two", bits, &n, &err), BA_ERR_INPUT);
}

/* Three layers: conv1 {2,4,8}, fc1 {2,4}, fc2 {4,8}; cost 1/b, avg-bits on equal params. */
static ba_problem_t *three_layers(void) {
    const char *names[] = {"conv1.weight", "fc1.weight", "fc2.weight"};
    int ncand[] = {3, 2, 2}, bits[] = {2, 4, 8, 2, 4, 4, 8};
    double cost[7], coef[7];
    for (int i = 0; i < 7; i++) cost[i] = 1.0 / bits[i], coef[i] = bits[i] / 3.0;
    ba_problem_t *p;
    ba_error err;
    cr_assert_eq(ba_problem_create(3, names, ncand, bits, cost, &p, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_problem_add_budget(p, BA_BUDGET_AVG_BITS, 5.0, 0.0, coef, &err), BA_OK, "%s", err.msg);
    return p;
}

Test(problem, pins_match_globs_and_refuse_bad_ones) {
    ba_problem_t *p = three_layers();
    ba_error err;
    cr_assert_eq(ba_problem_pin(p, "fc*=4", &err), BA_OK, "%s", err.msg);
    cr_assert_eq(p->pin[1], 4);
    cr_assert_eq(p->pin[2], 4);
    cr_assert_eq(p->pin[0], 0);
    cr_assert_eq(ba_problem_pin(p, "attn*=4", &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "no layer matches"), "%s", err.msg);
    cr_assert_eq(ba_problem_pin(p, "fc1.weight=8", &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "fc1.weight") && strstr(err.msg, "8"), "%s", err.msg);
    cr_assert_eq(ba_problem_pin(p, "conv1.weight=x", &err), BA_ERR_INPUT);
    cr_assert_eq(ba_problem_pin(p, "conv1.weight", &err), BA_ERR_INPUT);
    ba_solution_t sol;
    cr_assert_eq(ba_ilp_solve(p, NULL, &sol, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(sol.bits[0], 4); /* (b + 4 + 4)/3 <= 5: b <= 7 */
    cr_assert_eq(sol.bits[1], 4);
    ba_solution_free(&sol);
    ba_problem_free(p);
}

Test(problem, ties_share_a_width_and_refuse_disjoint_candidates) {
    ba_problem_t *p = three_layers();
    ba_error err;
    cr_assert_eq(ba_problem_tie(p, "fc*", &err), BA_OK, "%s", err.msg); /* common width: 4 */
    ba_solution_t sol;
    cr_assert_eq(ba_ilp_solve(p, NULL, &sol, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(sol.bits[1], sol.bits[2]);
    cr_assert_eq(sol.bits[1], 4);
    ba_solution_free(&sol);
    cr_assert_eq(ba_problem_tie(p, "nothing*", &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "no layer matches"), "%s", err.msg);
    ba_problem_free(p);

    /* fc1 {2,4} and a layer with {8} only: nothing in common. */
    const char *names[] = {"a", "b"};
    int ncand[] = {2, 1}, bits[] = {2, 4, 8};
    double cost[] = {1, 0.5, 0.1};
    cr_assert_eq(ba_problem_create(2, names, ncand, bits, cost, &p, &err), BA_OK);
    cr_assert_eq(ba_problem_tie(p, "*", &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "no candidate width in common"), "%s", err.msg);
    ba_problem_free(p);
}

Test(problem, tie_with_conflicting_pins_is_refused) {
    ba_problem_t *p = three_layers();
    ba_error err;
    cr_assert_eq(ba_problem_pin(p, "conv1.weight=2", &err), BA_OK);
    cr_assert_eq(ba_problem_tie(p, "conv1.weight", &err), BA_OK); /* a group of one: no tie */
    cr_assert_eq(ba_problem_tie(p, "*1.weight", &err), BA_OK);    /* conv1 & fc1 share 2 */
    cr_assert_eq(ba_problem_tie(p, "*", &err), BA_ERR_INPUT);     /* fc2 lacks 2 */
    ba_problem_free(p);
}

Test(problem, unreachable_budget_names_its_smallest_value) {
    ba_problem_t *p = three_layers();
    p->limit[0] = 1.5; /* smallest avg-bits: (2 + 2 + 4)/3 = 2.667 */
    ba_error err;
    ba_solution_t sol;
    cr_assert_eq(ba_ilp_solve(p, NULL, &sol, &err), BA_ERR_INFEASIBLE);
    cr_assert_eq(ba_status_exit_code(err.code), 3);
    cr_assert(strstr(err.msg, "budget avg-bits=1.5 cannot be met") && strstr(err.msg, "2.66667"), "%s",
              err.msg);
    cr_assert_float_eq(ba_problem_min_budget(p, 0, NULL), 8.0 / 3, 1e-12);

    /* Two budgets each reachable alone, not together. */
    double mem[7] = {10, 1, 1, 10, 1, 10, 1}; /* memory favours 4/8-bit fc2, 4-bit fc1, 4-bit conv1 */
    ba_problem_free(p);
    p = three_layers();
    p->limit[0] = 8.0 / 3; /* forces 2,2,4 */
    cr_assert_eq(ba_problem_add_budget(p, BA_BUDGET_MEMORY, 12, 0, mem, &err), BA_OK);
    cr_assert_eq(ba_ilp_solve(p, NULL, &sol, &err), BA_ERR_INFEASIBLE);
    cr_assert(strstr(err.msg, "cannot hold together"), "%s", err.msg);
    ba_problem_free(p);
}

Test(ilp, sweep_gives_a_monotone_pareto_front) {
    ba_problem_t *p = three_layers();
    ba_error err;
    ba_sweep_t *s;
    cr_assert_eq(ba_ilp_sweep(p, 0, 2.0, 8.0, 0.5, NULL, &s, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(s->n, 13);
    cr_assert_eq(s->points[0].feasible, 0); /* 2.0 < 2.667 */
    cr_assert_eq(s->points[1].feasible, 0);
    cr_assert(s->points[2].feasible && s->points[2].pareto); /* 3.0 */
    int on_front = 0;
    for (int i = 3; i < s->n; i++) {
        cr_assert(s->points[i].feasible);
        cr_assert_leq(s->points[i].sol.objective, s->points[i - 1].sol.objective);
        cr_assert_leq(s->points[i].sol.budget[0], s->points[i].limit * (1 + 1e-12));
        /* Each point is the optimum a single solve finds. */
        p->limit[0] = s->points[i].limit;
        ba_solution_t one;
        cr_assert_eq(ba_ilp_solve(p, NULL, &one, &err), BA_OK);
        cr_assert_float_eq(one.objective, s->points[i].sol.objective, 1e-12);
        ba_solution_free(&one);
        on_front += s->points[i].pareto;
    }
    cr_assert_gt(on_front, 0);
    ba_sweep_free(s);
    ba_problem_free(p);
}

/* ---- latency sources ---- */

static char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/ba_test_lat_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void table_bad(const char *text, const char *needle) {
    char *path = write_tmp(text);
    ba_latency_table_t *t;
    ba_error err;
    cr_assert_eq(ba_latency_table_load(path, &t, &err), BA_ERR_INPUT, "should refuse:\n%s", text);
    cr_assert(strstr(err.msg, needle), "'%s' lacks '%s'", err.msg, needle);
    unlink(path);
}

Test(latency, table_reads_rows_and_names_missing_entries) {
    char *path =
        write_tmp("layer,bits,latency_us\r\nconv1.weight,4,12.5\n\"fc,1\",8,3\n\nconv1.weight,8,20\n");
    ba_latency_table_t *t;
    ba_error err;
    cr_assert_eq(ba_latency_table_load(path, &t, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_latency_table_rows(t), 3);
    double us;
    cr_assert_eq(ba_latency_table_get(t, "conv1.weight", 8, &us, &err), BA_OK);
    cr_assert_eq(us, 20.0);
    cr_assert_eq(ba_latency_table_get(t, "fc,1", 8, &us, &err), BA_OK);
    cr_assert_eq(us, 3.0);
    cr_assert_eq(ba_latency_table_get(t, "conv1.weight", 2, &us, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "conv1.weight") && strstr(err.msg, "2 bits"), "%s", err.msg);
    ba_latency_table_free(t);
    unlink(path);
}

Test(latency, bad_csv_names_the_line) {
    table_bad("", "empty");
    table_bad("layer,bits,latency\n", ":1:");
    table_bad("layer,bits,latency_us\na,4,1\nb,4\n", ":3:");
    table_bad("layer,bits,latency_us\na,4,1,9\n", ":2:");
    table_bad("layer,bits,latency_us\na,9,1\n", ":2: bits");
    table_bad("layer,bits,latency_us\na,4,-1\n", ":2: latency_us");
    table_bad("layer,bits,latency_us\na,4,nan\n", ":2: latency_us");
    table_bad("layer,bits,latency_us\na,4,1\n\"a,4,2\n", ":3:");
    table_bad("layer,bits,latency_us\na,4,1\nb,4,1\na,4,2\n", ":4: layer a at 4 bits repeats line 2");
}

Test(latency, roofline_profiles_load_and_follow_the_formula) {
    static const char *const names[] = {"edge-npu", "mobile-cpu", "datacenter-gpu"};
    char path[512];
    ba_error err;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/configs/hw/%s.yaml", BA_SOURCE_DIR, names[i]);
        ba_hw_profile_t *hw;
        cr_assert_eq(ba_hw_profile_load(path, &hw, &err), BA_OK, "%s", err.msg);
        cr_assert_str_eq(hw->name, names[i]);
        double lo, hi;
        /* Fewer bits never cost more. */
        cr_assert_eq(ba_hw_layer_latency(hw, "l", 4096 * 4096 / 2, 4096 * 4096, 4, &lo, &err), BA_OK, "%s",
                     err.msg);
        cr_assert_eq(ba_hw_layer_latency(hw, "l", 4096 * 4096, 4096 * 4096, 8, &hi, &err), BA_OK, "%s",
                     err.msg);
        cr_assert_leq(lo, hi);
        ba_hw_profile_free(hw);
    }
    /* The formula on a made-up profile: 10 GB/s, int8 1 TOPS, 5 us overhead. */
    char *yaml = write_tmp("memory_bandwidth_gbps: 10\nlaunch_overhead_us: 5\npeak_tops: {int8: 1}\n");
    char ypath[80];
    snprintf(ypath, sizeof ypath, "%s.yaml", yaml);
    cr_assert_eq(rename(yaml, ypath), 0);
    ba_hw_profile_t *hw;
    cr_assert_eq(ba_hw_profile_load(ypath, &hw, &err), BA_OK, "%s", err.msg);
    double us;
    /* memory-bound: 1e6 B / 1e10 B/s = 100 us; compute 2·1e6/1e12 = 2 us. */
    cr_assert_eq(ba_hw_layer_latency(hw, "l", 1000000, 1000000, 4, &us, &err), BA_OK);
    cr_assert_float_eq(us, 105.0, 1e-9);
    /* compute-bound: 2·1e9/1e12 = 2000 us. */
    cr_assert_eq(ba_hw_layer_latency(hw, "l", 1000, 1000000000, 8, &us, &err), BA_OK);
    cr_assert_float_eq(us, 2005.0, 1e-9);
    cr_assert_eq(ba_hw_layer_latency(hw, "fc3", 1000, 1000, 16, &us, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "16-bit") && strstr(err.msg, "fc3"), "%s", err.msg);
    ba_hw_profile_free(hw);
    unlink(ypath);
}

Test(latency, bad_profiles_are_refused) {
    static const char *const bad[][2] = {
        {"peak_tops: {int8: 1}\n", "memory_bandwidth_gbps"},
        {"memory_bandwidth_gbps: -3\npeak_tops: {int8: 1}\n", "memory_bandwidth_gbps"},
        {"memory_bandwidth_gbps: 10\n", "peak_tops"},
        {"memory_bandwidth_gbps: 10\npeak_tops: {int9: 1}\n", "int9"},
        {"memory_bandwidth_gbps: 10\npeak_tops: {int8: fast}\n", "int8"},
        {"memory_bandwidth_gbps: [10\n", "YAML"},
        {"- 1\n- 2\n", "mapping"},
    };
    ba_error err;
    ba_hw_profile_t *hw;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *tmp = write_tmp(bad[i][0]);
        char ypath[80];
        snprintf(ypath, sizeof ypath, "%s.yaml", tmp);
        cr_assert_eq(rename(tmp, ypath), 0);
        cr_assert_eq(ba_hw_profile_load(ypath, &hw, &err), BA_ERR_INPUT, "should refuse: %s", bad[i][0]);
        cr_assert(strstr(err.msg, bad[i][1]), "'%s' lacks '%s'", err.msg, bad[i][1]);
        unlink(ypath);
    }
    cr_assert_eq(ba_hw_profile_load("no-such-profile", &hw, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "no-such-profile"), "%s", err.msg);
}
