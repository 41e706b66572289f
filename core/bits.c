/* See bits.h. */
#include "core/bits.h"

#include <stdlib.h>
#include <string.h>

int ba_bits_valid(long long b) {
    return (b >= BA_BITS_MIN_INT && b <= BA_BITS_MAX_INT) || b == BA_BITS_FP16 || b == BA_BITS_FP32;
}

ba_status ba_bits_parse_list(const char *list, int *bits, int *n, ba_error *err) {
    int count = 0;
    const char *p = list ? list : "";
    *n = 0;
    if (!*p) return ba_error_set(err, BA_ERR_INPUT, "empty list");
    for (;;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',') || *p == '+' || *p == '-' || *p == ' ' || !ba_bits_valid(v))
            return ba_error_set(err, BA_ERR_INPUT, "expected a comma list of bit-widths (%s), got '%s'",
                                BA_BITS_WIDTHS, list);
        for (int i = 0; i < count; i++)
            if (bits[i] == v)
                return ba_error_set(err, BA_ERR_INPUT, "bit-width %lld listed twice in '%s'", v, list);
        bits[count++] = (int)v; /* at most BA_BITS_MAX_CANDIDATES: no width repeats */
        if (!*end) break;
        p = end + 1;
    }
    *n = count;
    return BA_OK;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

ba_status ba_bits_parse(const char *list, int *bits, int *n, ba_error *err) {
    BA_TRY(ba_bits_parse_list(list, bits, n, err));
    qsort(bits, (size_t)*n, sizeof *bits, cmp_int);
    return BA_OK;
}
