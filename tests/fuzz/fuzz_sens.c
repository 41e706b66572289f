/* libFuzzer target for the --sensitivity-file readers (sensitivity/table_io.c:
 * JSON, CSV "layer,bits,cost" and "layer,score") against the digits CNN: any
 * bytes must give a table covering every layer and candidate width, or an
 * error naming the file; never a crash, leak or hang. */
#include <math.h>
#include <stdint.h>
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
    char path[] = "/tmp/ba_fuzz_sens_XXXXXX";
    if (ba_fuzz_temp(path, data, size) != 0) {
        unlink(path);
        return 0;
    }
    static const int bits[] = {2, 4, 8};
    ba_quant_cfg_t cfg = ba_quant_cfg_default();
    ba_error err;
    memset(&err, 0, sizeof err);
    ba_sens_table_t *t = NULL;
    /* Two candidate sets: the default list and a short one (rows for other widths are skipped). */
    for (int pass = 0; pass < 2; pass++) {
        const int *b = pass ? bits : NULL;
        int nb = pass ? 3 : 0;
        if (ba_sens_read_file(path, m, b, nb, &cfg, &t, &err) == BA_OK) {
            if (!t || t->nlayers != m->nlayers || t->nbits < 1) __builtin_trap();
            for (int l = 0; l < t->nlayers; l++)
                for (int k = 0; k < t->nbits; k++)
                    if (!isfinite(t->layers[l].cost[k])) __builtin_trap(); /* every cost filled, finite */
            ba_sens_table_free(t);
            t = NULL;
        } else if (t || strncmp(err.msg, path, strlen(path)) != 0) {
            __builtin_trap(); /* errors name the file */
        }
    }
    unlink(path);
    return 0;
}
