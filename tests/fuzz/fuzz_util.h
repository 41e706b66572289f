/* Shared by the libFuzzer targets whose entry point reads a file: the input
 * bytes go to a fresh temp file so the real reader (open, size checks, parse)
 * is exercised. */
#ifndef BA_FUZZ_UTIL_H
#define BA_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes data to a new file from template (ending in XXXXXX, modified in
 * place); 0 on success. The caller unlinks it. */
static inline int ba_fuzz_temp(char *template_path, const uint8_t *data, size_t size) {
    int fd = mkstemp(template_path);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    close(fd);
    return done == size ? 0 : -1;
}

#endif
