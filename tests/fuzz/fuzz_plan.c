/* libFuzzer target for the plan JSON reader (quant/plan.c): any bytes must
 * give a plan or an error naming the file, never a crash, leak or hang. A
 * plan that reads must also validate against the digits CNN without trouble
 * (accepted or refused), and write back to JSON that reads again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitalloc.h"
#include "tests/fuzz/fuzz_util.h"

static ba_model_t *model(void) {
    static ba_model_t *m;
    if (!m) {
        ba_error err;
        if (ba_model_load(BA_FIXTURES "/digits/cnn_dyn.onnx", NULL, &m, &err) != BA_OK) __builtin_trap();
    }
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ba_model_t *m = model();
    char path[] = "/tmp/ba_fuzz_plan_XXXXXX";
    if (ba_fuzz_temp(path, data, size) != 0) {
        unlink(path);
        return 0;
    }
    ba_error err;
    memset(&err, 0, sizeof err);
    ba_plan_t *p = NULL;
    if (ba_plan_read(path, &p, &err) == BA_OK) {
        if (ba_plan_validate(p, m, 0, &err) == BA_OK) {
            int bits[64];
            if (m->nlayers > 64 || ba_plan_bits(p, m, bits, &err) != BA_OK) __builtin_trap();
        }
        char *text = NULL;
        if (ba_plan_to_json(p, &text, &err) != BA_OK) __builtin_trap();
        char again[] = "/tmp/ba_fuzz_plan_XXXXXX";
        if (ba_fuzz_temp(again, (const uint8_t *)text, strlen(text)) == 0) {
            ba_plan_t *q = NULL;
            if (ba_plan_read(again, &q, &err) != BA_OK) __builtin_trap(); /* what we write, we read */
            ba_plan_free(q);
        }
        unlink(again);
        free(text);
        ba_plan_free(p);
    } else {
        if (p || strncmp(err.msg, path, strlen(path)) != 0) __builtin_trap(); /* errors name the file */
    }
    unlink(path);
    return 0;
}
