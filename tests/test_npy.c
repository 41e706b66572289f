/* eval/npy and eval/dataset: every dtype and format version numpy writes loads
 * with the right values; every malformed file (tests/fixtures/npy_cases, made by
 * make_npy_cases.py, and byte-level cases built here) is an input error that
 * names the file and the fault; datasets, batches and labels keep their promises. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/dataset.h"
#include "eval/npy.h"
#include "tests/helpers.h"

#define CASES BA_FIXTURES "/npy_cases/"

static ba_tensor_t *load_ok(const char *file) {
    ba_error err = {0};
    ba_tensor_t *t = NULL;
    ba_status st = ba_npy_load(file, &t, &err);
    cr_assert_eq(st, BA_OK, "%s: %s", file, err.msg);
    cr_assert_not_null(t);
    return t;
}

/* The load fails with BA_ERR_INPUT and a message naming the file and containing `why`. */
static void expect_bad(const char *file, const char *why) {
    ba_error err = {0};
    ba_tensor_t *t = NULL;
    ba_status st;
    size_t n = strlen(file);
    if (n > 4 && strcmp(file + n - 4, ".npz") == 0) {
        ba_npz_t *z = NULL;
        st = ba_npz_load(file, &z, &err);
        cr_assert_null(z);
    } else {
        st = ba_npy_load(file, &t, &err);
        cr_assert_null(t);
    }
    cr_assert_eq(st, BA_ERR_INPUT, "%s: status %d (%s)", file, st, err.msg);
    const char *base = strrchr(file, '/') + 1;
    cr_assert(strstr(err.msg, base), "message does not name the file: %s", err.msg);
    cr_assert(strstr(err.msg, why), "expected '%s' in: %s", why, err.msg);
}

static void assert_a23(const ba_tensor_t *t) {
    cr_assert_eq(t->dtype, BA_DT_F32);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 2);
    cr_assert_eq(t->shape[1], 3);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(((float *)t->data)[i], i / 4.0f, 0);
}

Test(npy, float32_v1_loads_values) {
    ba_tensor_t *t = load_ok(CASES "good_f4.npy");
    assert_a23(t);
    ba_tensor_unref(t);
}

Test(npy, versions_2_and_3_load) {
    ba_tensor_t *t = load_ok(CASES "good_v2.npy");
    assert_a23(t);
    ba_tensor_unref(t);
    t = load_ok(CASES "good_v3.npy");
    assert_a23(t);
    ba_tensor_unref(t);
}

Test(npy, float64_and_float16_load) {
    ba_tensor_t *t = load_ok(CASES "good_f8.npy");
    cr_assert_eq(t->dtype, BA_DT_F64);
    cr_assert_eq(t->numel, 3);
    const double *d = t->data;
    cr_assert(d[0] == 1.5 && d[1] == -2.25 && d[2] == 1e300);
    ba_tensor_unref(t);
    t = load_ok(CASES "good_f2.npy");
    cr_assert_eq(t->dtype, BA_DT_F16);
    const uint16_t *h = t->data;
    cr_assert(ba_f16_to_f32(h[0]) == 1.0f && ba_f16_to_f32(h[1]) == -0.5f && ba_f16_to_f32(h[2]) == 65504.0f);
    ba_tensor_unref(t);
}

Test(npy, integer_dtypes_load) {
    ba_tensor_t *t = load_ok(CASES "good_i8.npy");
    cr_assert_eq(t->dtype, BA_DT_I64);
    const int64_t *l = t->data;
    cr_assert(l[0] == -(INT64_C(1) << 40) && l[1] == 7 && l[2] == 0 && l[3] == (INT64_C(1) << 62));
    ba_tensor_unref(t);
    t = load_ok(CASES "good_i4.npy");
    cr_assert_eq(t->dtype, BA_DT_I32);
    const int32_t *i = t->data;
    cr_assert(i[0] == -5 && i[1] == 0 && i[2] == INT32_MAX);
    ba_tensor_unref(t);
    t = load_ok(CASES "good_i1.npy");
    cr_assert_eq(t->dtype, BA_DT_I8);
    const int8_t *c = t->data;
    cr_assert(c[0] == -128 && c[1] == 0 && c[2] == 127);
    ba_tensor_unref(t);
    t = load_ok(CASES "good_u1.npy");
    cr_assert_eq(t->dtype, BA_DT_U8);
    const uint8_t *u = t->data;
    cr_assert(u[0] == 0 && u[1] == 255 && u[2] == 17 && u[3] == 3);
    ba_tensor_unref(t);
}

Test(npy, bool_loads_as_0_or_1) {
    ba_tensor_t *t = load_ok(CASES "good_b1.npy");
    cr_assert_eq(t->dtype, BA_DT_BOOL);
    const uint8_t *b = t->data;
    cr_assert(b[0] == 1 && b[1] == 0 && b[2] == 1);
    ba_tensor_unref(t);
}

Test(npy, scalar_and_empty_arrays_load) {
    ba_tensor_t *t = load_ok(CASES "good_scalar.npy");
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(t->numel, 1);
    cr_assert(((double *)t->data)[0] == 3.25);
    ba_tensor_unref(t);
    t = load_ok(CASES "good_empty.npy");
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 0);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_eq(t->numel, 0);
    ba_tensor_unref(t);
}

Test(npy, header_spacing_key_order_and_py2_longs_accepted) {
    ba_tensor_t *t = load_ok(CASES "good_odd_header.npy");
    assert_a23(t);
    ba_tensor_unref(t);
    t = load_ok(CASES "good_py2_long.npy");
    assert_a23(t);
    ba_tensor_unref(t);
}

Test(npy, save_then_load_round_trips) {
    char dir[] = "/tmp/ba_npy_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    const ba_dtype dts[] = {BA_DT_F32, BA_DT_F64, BA_DT_F16, BA_DT_I64,
                            BA_DT_I32, BA_DT_I8,  BA_DT_U8,  BA_DT_BOOL};
    const int64_t shapes[][3] = {{2, 3, 5}, {7, 0, 0}, {0, 0, 0}};
    const int ranks[] = {3, 1, 0};
    ba_error err = {0};
    char path[256];
    snprintf(path, sizeof path, "%s/rt.npy", dir);
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        for (int s = 0; s < 3; s++) {
            ba_tensor_t *t = ba_tensor_new(dts[d], ranks[s], shapes[s], &err);
            cr_assert_not_null(t);
            uint8_t *p = t->data;
            for (size_t i = 0; i < ba_tensor_nbytes(t); i++) p[i] = (uint8_t)(i * 37 + 11);
            if (dts[d] == BA_DT_BOOL)
                for (size_t i = 0; i < ba_tensor_nbytes(t); i++) p[i] &= 1;
            cr_assert_eq(ba_npy_save(path, t, &err), BA_OK, "%s", err.msg);
            ba_tensor_t *r = load_ok(path);
            cr_assert_eq(r->dtype, t->dtype);
            cr_assert_eq(r->ndim, t->ndim);
            for (int i = 0; i < t->ndim; i++) cr_assert_eq(r->shape[i], t->shape[i]);
            cr_assert_eq(memcmp(r->data, t->data, ba_tensor_nbytes(t)), 0);
            ba_tensor_unref(r);
            ba_tensor_unref(t);
        }
    }
    /* numpy (the reference, Debian's /usr/bin/python3) reads what we write. */
    if (access("/usr/bin/python3", X_OK) == 0) {
        int64_t sh[2] = {2, 3};
        ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 2, sh, &err);
        for (int i = 0; i < 6; i++) ((float *)t->data)[i] = (float)i / 4;
        cr_assert_eq(ba_npy_save(path, t, &err), BA_OK);
        ba_tensor_unref(t);
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import numpy as n,sys; a=n.load('%s'); "
                 "sys.exit(0 if a.dtype=='<f4' and a.shape==(2,3) and (a==n.arange(6).reshape(2,3)/4).all() "
                 "else 1)\" 2>/dev/null",
                 path);
        cr_assert_eq(system(cmd), 0, "numpy could not read %s", path);
    }
    remove(path);
    rmdir(dir);
}

Test(npy, bad_magic_is_an_input_error) {
    expect_bad(CASES "bad_magic.npy", "bad magic");
}
Test(npy, unsupported_version_is_an_input_error) {
    expect_bad(CASES "bad_version.npy", "version 4.0");
}
Test(npy, truncated_header_is_an_input_error) {
    expect_bad(CASES "bad_truncated_header.npy", "truncated header");
}
Test(npy, truncated_body_is_an_input_error) {
    expect_bad(CASES "bad_truncated_body.npy", "truncated body");
}
Test(npy, trailing_bytes_are_a_size_mismatch) {
    expect_bad(CASES "bad_trailing_bytes.npy", "size mismatch");
}
Test(npy, header_not_a_dict_is_an_input_error) {
    expect_bad(CASES "bad_not_dict.npy", "not a dict");
}
Test(npy, unparsable_header_is_an_input_error) {
    expect_bad(CASES "bad_unparsable.npy", "unparsable");
}
Test(npy, missing_header_key_is_an_input_error) {
    expect_bad(CASES "bad_missing_key.npy", "missing key 'fortran_order'");
}
Test(npy, fortran_order_is_refused) {
    expect_bad(CASES "bad_fortran.npy", "fortran_order");
}
Test(npy, big_endian_is_refused) {
    expect_bad(CASES "bad_big_endian.npy", "big-endian dtype '>f4'");
}
Test(npy, unsupported_dtype_is_refused) {
    expect_bad(CASES "bad_dtype_complex.npy", "unsupported dtype '<c8'");
    expect_bad(CASES "bad_structured.npy", "unsupported dtype");
}
Test(npy, huge_header_is_refused) {
    expect_bad(CASES "bad_huge_header.npy", "exceeds the 10000-byte limit");
}
Test(npy, overflowing_shape_is_refused) {
    expect_bad(CASES "bad_overflow_shape.npy", "overflows");
}
Test(npy, negative_dimension_is_refused) {
    expect_bad(CASES "bad_negative_dim.npy", "negative dimension");
}
Test(npy, missing_file_is_an_input_error) {
    expect_bad(CASES "no_such_file.npy", "cannot open");
}

/* Byte-level cases that need no fixture: every prefix of a good file fails
 * cleanly (never reads past the buffer: ASan build), and header corner cases. */
Test(npy, every_truncation_of_a_good_file_fails_cleanly) {
    uint8_t *buf;
    size_t size;
    ba_error err = {0};
    cr_assert_eq(ba_file_read(CASES "good_f4.npy", &buf, &size, &err), BA_OK);
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact-size copy so ASan sees any over-read */
        memcpy(copy, buf, n);
        ba_tensor_t *t = NULL;
        ba_status st = ba_npy_load_mem(copy, n, "cut.npy", &t, &err);
        cr_assert_eq(st, BA_ERR_INPUT, "prefix %zu: %s", n, err.msg);
        cr_assert_null(t);
        cr_assert(strncmp(err.msg, "cut.npy: ", 9) == 0);
        free(copy);
    }
    free(buf);
}

static ba_status load_header(const char *hdr, size_t body, ba_error *err) {
    uint8_t buf[512] = {0};
    size_t hl = strlen(hdr);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)hl;
    buf[9] = 0;
    memcpy(buf + 10, hdr, hl);
    ba_tensor_t *t = NULL;
    ba_status st = ba_npy_load_mem(buf, 10 + hl + body, "h.npy", &t, err);
    ba_tensor_unref(t);
    return st;
}

Test(npy, header_corner_cases) {
    ba_error err = {0};
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':(2,)}\n", 8, &err), BA_OK, "%s",
                 err.msg);
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':()}", 4, &err), BA_OK, "%s",
                 err.msg);
    cr_assert_eq(load_header("{'descr':'<u1','fortran_order':False,'shape':(3,)}", 3, &err), BA_OK, "%s",
                 err.msg);
    /* "(2)" is the int 2 in Python, not a tuple. */
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':(2)}", 8, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "not a tuple"));
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':[2]}", 8, &err), BA_ERR_INPUT);
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':0,'shape':(2,)}", 8, &err), BA_ERR_INPUT);
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':(2,),'x':1}", 8, &err),
                 BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "unexpected key 'x'"));
    cr_assert_eq(load_header("{'descr':'<f4','descr':'<f4','fortran_order':False,'shape':(2,)}", 8, &err),
                 BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "repeated"));
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':(2,)} x", 8, &err), BA_ERR_INPUT);
    cr_assert_eq(load_header("{'descr':'<f4,'fortran_order':False,'shape':(2,)}", 8, &err), BA_ERR_INPUT);
    cr_assert_eq(
        load_header("{'descr':'<f4','fortran_order':False,'shape':(99999999999999999999,)}", 8, &err),
        BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "overflows"));
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':(1,1,1,1,1,1,1,1,1,)}", 4, &err),
                 BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "more than 8 dimensions"));
    cr_assert_eq(load_header("{'descr':'<f4','fortran_order':False,'shape':(2,)}\xe9", 8, &err),
                 BA_ERR_INPUT);
    cr_assert_eq(load_header("", 0, &err), BA_ERR_INPUT);
}

Test(npz, stored_members_load_by_name) {
    ba_error err = {0};
    ba_npz_t *z = NULL;
    cr_assert_eq(ba_npz_load(CASES "good_stored.npz", &z, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(z->count, 2);
    cr_assert_str_eq(z->members[0].name, "x");
    cr_assert_str_eq(z->members[1].name, "y");
    assert_a23(ba_npz_get(z, "x"));
    const ba_tensor_t *y = ba_npz_get(z, "y");
    cr_assert_eq(y->dtype, BA_DT_I64);
    cr_assert(((int64_t *)y->data)[2] == 3);
    cr_assert_null(ba_npz_get(z, "z"));
    ba_npz_free(z);
}

Test(npz, deflated_members_and_data_descriptors_load) {
    ba_error err = {0};
    ba_npz_t *z = NULL;
    cr_assert_eq(ba_npz_load(CASES "good_deflated.npz", &z, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(z->count, 2);
    assert_a23(ba_npz_get(z, "x"));
    cr_assert(((int64_t *)ba_npz_get(z, "y")->data)[1] == 2);
    ba_npz_free(z);
    cr_assert_eq(ba_npz_load(CASES "good_descriptor.npz", &z, &err), BA_OK, "%s", err.msg);
    assert_a23(ba_npz_get(z, "x"));
    ba_npz_free(z);
}

Test(npz, zip64_extras_and_end_record_load) {
    ba_error err = {0};
    ba_npz_t *z = NULL;
    cr_assert_eq(ba_npz_load(CASES "good_zip64.npz", &z, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(z->count, 2);
    assert_a23(ba_npz_get(z, "x"));
    const ba_tensor_t *y = ba_npz_get(z, "y");
    cr_assert_eq(y->numel, 3);
    cr_assert(((int64_t *)y->data)[2] == 2);
    ba_npz_free(z);
}

Test(npz, bad_local_header_is_an_input_error) {
    expect_bad(CASES "bad_local_header.npz", "bad local file header");
}
Test(npz, crc_mismatch_is_an_input_error) {
    expect_bad(CASES "bad_crc.npz", "CRC-32 mismatch");
}
Test(npz, unsupported_compression_is_an_input_error) {
    expect_bad(CASES "bad_bzip2.npz", "compression method 12");
}
Test(npz, member_not_npy_is_an_input_error) {
    expect_bad(CASES "bad_member_not_npy.npz", "readme.txt");
}
Test(npz, overlong_member_name_is_an_input_error) {
    expect_bad(CASES "bad_long_name.npz", "too long");
}
Test(npz, truncated_archive_is_an_input_error) {
    expect_bad(CASES "bad_truncated.npz", "truncated");
}
Test(npz, broken_member_names_archive_and_member) {
    expect_bad(CASES "bad_member_npy.npz", "member 'x.npy': truncated body");
}

Test(npz, every_truncation_and_bit_flip_fails_cleanly) {
    uint8_t *buf;
    size_t size;
    ba_error err = {0};
    cr_assert_eq(ba_file_read(CASES "good_deflated.npz", &buf, &size, &err), BA_OK);
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        ba_npz_t *z = NULL;
        cr_assert_neq(ba_npz_load_mem(copy, n, "cut.npz", &z, &err), BA_OK, "prefix %zu loaded", n);
        cr_assert_null(z);
        free(copy);
    }
    /* Any single flipped byte is caught (CRC, structure or deflate) or, if it
     * only hits metadata that does not matter (timestamps), leaves the values. */
    for (size_t i = 0; i < size; i++) {
        uint8_t *copy = malloc(size);
        memcpy(copy, buf, size);
        copy[i] ^= 0x5a;
        ba_npz_t *z = NULL;
        if (ba_npz_load_mem(copy, size, "flip.npz", &z, &err) == BA_OK) {
            const ba_tensor_t *x = ba_npz_get(z, "x");
            if (x) assert_a23(x);
            ba_npz_free(z);
        }
        free(copy);
    }
    free(buf);
}

/* ---- datasets ---- */
Test(dataset, single_unnamed_npy_is_the_first_input) {
    ba_error err = {0};
    ba_dataset_t *ds = NULL;
    const char *specs[] = {CASES "ds_a.npy"};
    cr_assert_eq(ba_dataset_load(specs, 1, &ds, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_dataset_count(ds), 1);
    cr_assert_null(ba_dataset_name(ds, 0));
    cr_assert_eq(ba_dataset_samples(ds), 4);
    ba_dataset_free(ds);
}

Test(dataset, named_npy_and_npz_members_are_inputs) {
    ba_error err = {0};
    ba_dataset_t *ds = NULL;
    const char *specs[] = {"pixels=" CASES "ds_a.npy", CASES "ds_multi.npz"};
    cr_assert_eq(ba_dataset_load(specs, 2, &ds, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(ba_dataset_count(ds), 3);
    cr_assert_eq(ba_dataset_find(ds, "pixels"), 0);
    cr_assert_eq(ba_dataset_find(ds, "input_ids"), 1);
    cr_assert_eq(ba_dataset_find(ds, "mask"), 2);
    cr_assert_eq(ba_dataset_find(ds, "nope"), -1);
    cr_assert_eq(ba_dataset_tensor(ds, 1)->dtype, BA_DT_I64);
    ba_dataset_free(ds);
}

Test(dataset, mismatched_sample_counts_name_both_files) {
    ba_error err = {0};
    ba_dataset_t *ds = NULL;
    const char *specs[] = {"a=" CASES "ds_a.npy", "b=" CASES "ds_5rows.npy"};
    cr_assert_eq(ba_dataset_load(specs, 2, &ds, &err), BA_ERR_INPUT);
    cr_assert_null(ds);
    cr_assert(strstr(err.msg, "ds_a.npy") && strstr(err.msg, "ds_5rows.npy"), "%s", err.msg);
    cr_assert(strstr(err.msg, "5 samples"), "%s", err.msg);
}

Test(dataset, ambiguous_or_duplicate_inputs_are_refused) {
    ba_error err = {0};
    ba_dataset_t *ds = NULL;
    const char *two_unnamed[] = {CASES "ds_a.npy", CASES "ds_b.npy"};
    cr_assert_eq(ba_dataset_load(two_unnamed, 2, &ds, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "NAME=FILE"), "%s", err.msg);
    const char *dup[] = {"x=" CASES "ds_a.npy", "x=" CASES "ds_b.npy"};
    cr_assert_eq(ba_dataset_load(dup, 2, &ds, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "'x' is given twice"), "%s", err.msg);
    const char *scalar[] = {CASES "good_scalar.npy"};
    cr_assert_eq(ba_dataset_load(scalar, 1, &ds, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "sample axis"), "%s", err.msg);
    const char *named_npz[] = {"x=" CASES "ds_multi.npz"};
    cr_assert_eq(ba_dataset_load(named_npz, 1, &ds, &err), BA_ERR_INPUT);
    const char *bad[] = {"x=" CASES "bad_crc.npz"};
    cr_assert_eq(ba_dataset_load(bad, 1, &ds, &err), BA_ERR_INPUT);
    const char *missing[] = {"x=" CASES "missing.npy"};
    cr_assert_eq(ba_dataset_load(missing, 1, &ds, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "missing.npy"), "%s", err.msg);
    cr_assert_null(ds);
}

/* NaN/Inf in calibration data is refused when it is loaded, for every command,
 * naming the file, the input, the element and what it holds. */
Test(dataset, non_finite_data_is_refused_at_load) {
    char dir[512], path[600];
    cr_assert_eq(ba_test_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/x.npy", dir);
    static const struct {
        ba_dtype dt;
        double bad;
        const char *want;
    } cases[] = {{BA_DT_F32, NAN, "element 5 is NaN"},
                 {BA_DT_F32, INFINITY, "element 5 is +Inf"},
                 {BA_DT_F64, -INFINITY, "element 5 is -Inf"},
                 {BA_DT_F64, NAN, "element 5 is NaN"}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t shape[2] = {3, 4};
        ba_error err = {0};
        ba_tensor_t *t = ba_tensor_new(cases[c].dt, 2, shape, &err);
        cr_assert_not_null(t);
        for (int64_t i = 0; i < t->numel; i++) {
            double v = i == 5 ? cases[c].bad : (double)i;
            if (cases[c].dt == BA_DT_F32)
                ((float *)t->data)[i] = (float)v;
            else
                ((double *)t->data)[i] = v;
        }
        cr_assert_eq(ba_npy_save(path, t, &err), BA_OK, "%s", err.msg);
        ba_tensor_unref(t);
        ba_dataset_t *ds = NULL;
        char spec[700];
        snprintf(spec, sizeof spec, "img=%s", path);
        const char *specs[] = {spec};
        cr_expect_eq(ba_dataset_load(specs, 1, &ds, &err), BA_ERR_INPUT, "case %zu accepted", c);
        cr_expect_null(ds);
        cr_expect(strstr(err.msg, path) && strstr(err.msg, "input 'img'") && strstr(err.msg, cases[c].want),
                  "case %zu: %s", c, err.msg);
    }
    ba_test_rmtree(dir);
}

Test(dataset, batch_is_a_view_of_the_rows) {
    ba_error err = {0};
    ba_dataset_t *ds = NULL;
    const char *specs[] = {CASES "ds_a.npy"};
    cr_assert_eq(ba_dataset_load(specs, 1, &ds, &err), BA_OK, "%s", err.msg);
    ba_tensor_t *b = NULL;
    cr_assert_eq(ba_dataset_batch(ds, 1, 2, 0, &b, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(b->ndim, 2);
    cr_assert_eq(b->shape[0], 2);
    cr_assert_eq(b->shape[1], 3);
    cr_assert_eq(b->numel, 6);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(((float *)b->data)[i], (float)(3 + i), 0);
    ba_tensor_t *e = NULL;
    cr_assert_eq(ba_dataset_batch(ds, 4, 0, 0, &e, &err), BA_OK); /* empty batch at the end */
    cr_assert_eq(e->numel, 0);
    ba_tensor_unref(e);
    cr_assert_eq(ba_dataset_batch(ds, 3, 2, 0, &e, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_dataset_batch(ds, -1, 1, 0, &e, &err), BA_ERR_INPUT);
    cr_assert_eq(ba_dataset_batch(ds, 0, 1, 1, &e, &err), BA_ERR_INPUT);
    ba_dataset_free(ds); /* the batch keeps its rows alive */
    cr_assert_float_eq(((float *)b->data)[5], 8.0f, 0);
    ba_tensor_unref(b);
}

Test(dataset, sha256_follows_content_and_names) {
    ba_error err = {0};
    ba_dataset_t *d1 = NULL, *d2 = NULL, *d3 = NULL;
    const char *s1[] = {CASES "ds_a.npy"}, *s2[] = {"x=" CASES "ds_a.npy"}, *s3[] = {CASES "ds_5rows.npy"};
    cr_assert_eq(ba_dataset_load(s1, 1, &d1, &err), BA_OK);
    cr_assert_eq(ba_dataset_load(s2, 1, &d2, &err), BA_OK);
    cr_assert_eq(ba_dataset_load(s3, 1, &d3, &err), BA_OK);
    char h1[65], h1b[65], h2[65], h3[65], file[65];
    ba_dataset_sha256(d1, h1);
    ba_dataset_sha256(d2, h2);
    ba_dataset_sha256(d3, h3);
    cr_assert_eq(strlen(h1), 64);
    cr_assert_str_neq(h1, h2);
    cr_assert_str_neq(h1, h3);
    /* The documented formula: sha256("- " + sha256(file) + "\n"). */
    cr_assert_eq(ba_sha256_file(CASES "ds_a.npy", file, &err), BA_OK);
    char line[80];
    snprintf(line, sizeof line, "- %s\n", file);
    ba_sha256_hex(line, strlen(line), h1b);
    cr_assert_str_eq(h1, h1b);
    ba_dataset_free(d1);
    ba_dataset_free(d2);
    ba_dataset_free(d3);
}

/* ---- labels ---- */
Test(labels, int64_and_int32_column_load) {
    ba_error err = {0};
    int64_t *l = NULL, n = 0;
    cr_assert_eq(ba_labels_load(CASES "labels_i64.npy", &l, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(n, 4);
    cr_assert(l[0] == 3 && l[1] == 0 && l[2] == 9 && l[3] == 1);
    free(l);
    cr_assert_eq(ba_labels_load(CASES "labels_i32_col.npy", &l, &n, &err), BA_OK, "%s", err.msg);
    cr_assert_eq(n, 4);
    cr_assert(l[0] == 2 && l[3] == 5);
    free(l);
}

Test(labels, float_negative_or_2d_labels_are_refused) {
    ba_error err = {0};
    int64_t *l = NULL, n = 0;
    cr_assert_eq(ba_labels_load(CASES "labels_float.npy", &l, &n, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "labels_float.npy") && strstr(err.msg, "float32"), "%s", err.msg);
    cr_assert_eq(ba_labels_load(CASES "labels_negative.npy", &l, &n, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "negative") && strstr(err.msg, "row 1"), "%s", err.msg);
    cr_assert_eq(ba_labels_load(CASES "labels_2d.npy", &l, &n, &err), BA_ERR_INPUT);
    cr_assert(strstr(err.msg, "(N,)"), "%s", err.msg);
    cr_assert_eq(ba_labels_load(CASES "good_b1.npy", &l, &n, &err), BA_ERR_INPUT);
    cr_assert_null(l);
}
