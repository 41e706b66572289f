/* See bits.h. */
#include "core/bits.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/ggml_types.h"

int ba_bits_valid(long long b) {
    return (b >= BA_BITS_MIN_INT && b <= BA_BITS_MAX_INT) || b == BA_BITS_FP16 || b == BA_BITS_FP32;
}

/* One item of a list, [p, p+len): a width, or a ggml type name standing for one. *named is set
 * when it is a name. */
static ba_status parse_item(const char *p, size_t len, const char *list, long long *v, int *named,
                            ba_error *err) {
    char item[32];
    if (len == 0 || len >= sizeof item) goto bad;
    memcpy(item, p, len);
    item[len] = '\0';
    if (isalpha((unsigned char)item[0])) {
        int b = ba_ggml_bits_of_type_name(item);
        if (b == 0)
            return ba_error_set(
                err, BA_ERR_INPUT,
                "ggml type %s in '%s' stands for no bit-width (types that do: " BA_GGML_WIDTH_TYPES ")", item,
                list);
        if (b < 0)
            return ba_error_set(
                err, BA_ERR_INPUT,
                "'%s' in '%s' is neither a bit-width (%s) nor a ggml type (" BA_GGML_WIDTH_TYPES ")", item,
                list, BA_BITS_WIDTHS);
        *v = b;
        *named = 1;
        return BA_OK;
    }
    char *end;
    *v = strtoll(item, &end, 10);
    if (end == item || *end || !isdigit((unsigned char)item[0]) || !ba_bits_valid(*v)) goto bad;
    return BA_OK;
bad:
    return ba_error_set(err, BA_ERR_INPUT,
                        "expected a comma list of bit-widths (%s) or ggml types (" BA_GGML_WIDTH_TYPES
                        "), got '%s'",
                        BA_BITS_WIDTHS, list);
}

ba_status ba_bits_parse_list_named(const char *list, int *bits, int *n, int *named, ba_error *err) {
    int count = 0, any = 0;
    const char *p = list ? list : "";
    *n = 0;
    if (named) *named = 0;
    if (!*p) return ba_error_set(err, BA_ERR_INPUT, "empty list");
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        long long v = 0;
        BA_TRY(parse_item(p, len, list, &v, &any, err));
        for (int i = 0; i < count; i++)
            if (bits[i] == v)
                return ba_error_set(err, BA_ERR_INPUT, "bit-width %lld listed twice in '%s'", v, list);
        bits[count++] = (int)v; /* at most BA_BITS_MAX_CANDIDATES: no width repeats */
        if (!comma) break;
        p = comma + 1;
    }
    *n = count;
    if (named) *named = any;
    return BA_OK;
}

ba_status ba_bits_parse_list(const char *list, int *bits, int *n, ba_error *err) {
    return ba_bits_parse_list_named(list, bits, n, NULL, err);
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
