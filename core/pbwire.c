#include "core/pbwire.h"

int ba_pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end) return 0;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

static uint64_t le_bits(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

int ba_pb_next(const uint8_t **p, const uint8_t *end, ba_pb_field *f) {
    f->start = *p;
    uint64_t key;
    if (!ba_pb_varint(p, end, &key)) return 0;
    f->field = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->field == 0) return 0;
    f->payload = NULL;
    f->len = 0;
    f->value = 0;
    uint64_t v;
    switch (f->wire) {
    case BA_PB_VARINT:
        if (!ba_pb_varint(p, end, &f->value)) return 0;
        break;
    case BA_PB_I64:
        if ((size_t)(end - *p) < 8) return 0;
        f->value = le_bits(*p, 8);
        *p += 8;
        break;
    case BA_PB_I32:
        if ((size_t)(end - *p) < 4) return 0;
        f->value = le_bits(*p, 4);
        *p += 4;
        break;
    case BA_PB_LEN:
        if (!ba_pb_varint(p, end, &v) || v > (uint64_t)(end - *p)) return 0;
        f->payload = *p;
        f->len = (size_t)v;
        *p += v;
        break;
    default: return 0; /* groups (3, 4) and the reserved types */
    }
    f->end = *p;
    return 1;
}
