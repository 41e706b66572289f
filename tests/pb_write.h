/* Protobuf wire writing for the small messages tests build by hand (ONNX
 * ModelProto, SentencePiece ModelProto): one writer for every test. A message
 * that would outgrow the buffer sets full and keeps what fitted. */
#ifndef BA_TESTS_PB_WRITE_H
#define BA_TESTS_PB_WRITE_H

#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t b[4096];
    size_t n;
    int full;
} ba_pb_t;

static inline void ba_pb_varint(ba_pb_t *p, uint64_t v) {
    do {
        uint8_t c = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
        if (p->n < sizeof p->b)
            p->b[p->n++] = c;
        else
            p->full = 1;
    } while (v);
}
static inline void ba_pb_key(ba_pb_t *p, unsigned field, int wire) {
    ba_pb_varint(p, (uint64_t)field << 3 | (unsigned)wire);
}
static inline void ba_pb_int(ba_pb_t *p, unsigned field, uint64_t v) {
    ba_pb_key(p, field, 0);
    ba_pb_varint(p, v);
}
static inline void ba_pb_f32(ba_pb_t *p, unsigned field, float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    ba_pb_key(p, field, 5);
    for (int i = 0; i < 4; i++) {
        if (p->n < sizeof p->b)
            p->b[p->n++] = (uint8_t)(bits >> (8 * i));
        else
            p->full = 1;
    }
}
static inline void ba_pb_bytes(ba_pb_t *p, unsigned field, const void *d, size_t n) {
    ba_pb_key(p, field, 2);
    ba_pb_varint(p, n);
    if (p->n + n <= sizeof p->b) {
        memcpy(p->b + p->n, d, n);
        p->n += n;
    } else {
        p->full = 1;
    }
}
static inline void ba_pb_str(ba_pb_t *p, unsigned field, const char *s) {
    ba_pb_bytes(p, field, s, strlen(s));
}
static inline void ba_pb_msg(ba_pb_t *p, unsigned field, const ba_pb_t *m) {
    ba_pb_bytes(p, field, m->b, m->n);
    p->full |= m->full;
}

#endif
