/* core/: SHA-256 vectors, text buffer and CSV fields, RNG determinism, fp16 conversion, tensor views. */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/helpers.h"

Test(core, sha256_matches_fips_vectors) {
    char hex[65];
    ba_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ba_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ba_sha256_hex(m, strlen(m), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(core, text_buffer_and_csv_fields_to_a_buffer_and_a_file) {
    ba_sbuf_t b = {0};
    for (int i = 0; i < 100; i++) ba_sbuf_put(&b, "abc,");
    cr_assert(!b.oom);
    cr_expect_eq(b.len, 400);
    cr_expect_eq(strlen(b.s), 400);
    free(b.s);
    const char *fields[] = {"plain", "a,b", "say \"hi\"", "two\nlines", "", NULL};
    const char *want = "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"||";
    ba_sbuf_t sb = {0};
    char *fs = NULL;
    size_t flen = 0;
    FILE *fp = open_memstream(&fs, &flen);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        ba_sbuf_csv_field(&sb, fields[i]);
        ba_csv_field(fp, fields[i]);
        if (i + 1 < sizeof fields / sizeof fields[0]) {
            ba_sbuf_put(&sb, "|");
            fputc('|', fp);
        }
    }
    fclose(fp);
    cr_expect_str_eq(sb.s, want);
    cr_expect_str_eq(fs, want);
    free(sb.s);
    free(fs);
}

Test(core, rng_same_seed_same_stream) {
    ba_rng_t a, b;
    ba_rng_seed(&a, 42);
    ba_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) cr_assert_eq(ba_rng_next(&a), ba_rng_next(&b));
    ba_rng_seed(&b, 43);
    cr_assert_neq(ba_rng_next(&a), ba_rng_next(&b));
    for (int i = 0; i < 1000; i++) cr_assert_lt(ba_rng_below(&a, 7), 7u);
}

Test(core, fp16_round_trip_and_rounding) {
    cr_assert_eq(ba_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(ba_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(ba_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(ba_f32_to_f16(1e6f), 0x7c00);
    cr_assert_float_eq(ba_f16_to_f32(0x3555), 0.333251953125f, 0);
    cr_assert_float_eq(ba_f16_to_f32(0x0001), 5.960464477539063e-08f, 0);
    /* 1 + 2^-11 is a tie between 1 and 1+2^-10: rounds to even (1.0). */
    cr_assert_eq(ba_f32_to_f16(1.0f + 0x1.0p-11f), 0x3c00);
    for (uint32_t h = 0; h < 0x7c00; h++) cr_assert_eq(ba_f32_to_f16(ba_f16_to_f32((uint16_t)h)), h);
}

Test(core, tensor_view_shares_and_refcounts) {
    ba_error err;
    int64_t shape[2] = {2, 3};
    ba_tensor_t *t = ba_tensor_new(BA_DT_F32, 2, shape, &err);
    cr_assert_not_null(t);
    ((float *)t->data)[5] = 7.f;
    int64_t flat[1] = {6};
    ba_tensor_t *v = ba_tensor_view(t, 1, flat, &err);
    ba_tensor_unref(t);
    cr_assert_float_eq(((float *)v->data)[5], 7.f, 0);
    int64_t bad[1] = {5};
    cr_assert_null(ba_tensor_view(v, 1, bad, &err));
    ba_tensor_t *c = ba_tensor_cast(v, BA_DT_I64, &err);
    cr_assert_eq(((int64_t *)c->data)[5], 7);
    ba_tensor_unref(c);
    ba_tensor_unref(v);
}

/* core/bits.h: the one list of valid widths and the one width-list parser. */
Test(core, bit_widths_are_listed_once_and_parsed_once) {
    for (int b = -2; b <= 40; b++)
        cr_expect_eq(ba_bits_valid(b), (b >= 2 && b <= 8) || b == 16 || b == 32, "%d", b);
    int bits[BA_BITS_MAX_CANDIDATES], n;
    ba_error err;
    cr_assert_eq(ba_bits_parse_list("8,2,16", bits, &n, &err), BA_OK, "%s", err.msg);
    cr_expect(n == 3 && bits[0] == 8 && bits[1] == 2 && bits[2] == 16, "order kept");
    cr_assert_eq(ba_bits_parse("8,2,16", bits, &n, &err), BA_OK);
    cr_expect(n == 3 && bits[0] == 2 && bits[1] == 8 && bits[2] == 16, "sorted");
    cr_assert_eq(ba_bits_parse("2,3,4,5,6,7,8,16,32", bits, &n, &err), BA_OK, "every width fits");
    cr_expect_eq(n, BA_BITS_MAX_CANDIDATES);
    static const char *const bad[] = {"",    "2,", ",2", "2,,4", "9",  "1",  "two",
                                      "4,4", "+4", "-4", " 4",   "4 ", "0x4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(ba_bits_parse_list(bad[i], bits, &n, &err), BA_ERR_INPUT, "'%s'", bad[i]);
    cr_assert_eq(ba_bits_parse_list("4,4", bits, &n, &err), BA_ERR_INPUT);
    cr_expect(strstr(err.msg, "listed twice"), "%s", err.msg);
}
