/* libFuzzer target: arbitrary bytes as an ONNX file must give BA_OK or an
 * error, never a crash, hang or leak. The bytes go through a temp file so the
 * real entry point (mmap, wire walker, protobuf-c, graph passes) is exercised. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bitalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[] = "/tmp/ba_fuzz_onnx_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    close(fd);
    ba_error err;
    ba_model_t *m = NULL;
    ba_load_opts_t o = {.include_embeddings = (int)(size & 1)};
    if (ba_model_load(path, &o, &m, &err) == BA_OK) ba_model_free(m);
    unlink(path);
    return 0;
}
