/* The LLM tests' shared fixture: the tiny trained llama GGUF and the pinned llama.cpp libraries
 * (scripts/setup installs them under build/vendor/llama; BA_LLAMA_DIR overrides). Tests that need
 * the libraries are skipped with a message when they are not installed. */
#ifndef BA_TESTS_LLM_FIXTURE_H
#define BA_TESTS_LLM_FIXTURE_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llm/llama.h"

#define TINY_GGUF BA_FIXTURES "/llm/tiny.gguf"
#define CALIB_TXT BA_FIXTURES "/llm/calib.txt"
#define VENDOR_DIR                                                                                           \
    BA_SOURCE_DIR "/build/vendor/llama/node_modules/" BA_LLAMA_NPM_PACKAGE "/" BA_LLAMA_NPM_BINS

static inline const char *ba_test_llama_dir(void) {
    const char *dir = getenv(BA_LLAMA_DIR_ENV);
    return dir && *dir ? dir : VENDOR_DIR;
}

/* 1 when the libraries are installed where the tests (and the CLI next to build/) find them. */
static inline int ba_test_llama_present(void) {
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/libllama.v0.5.0.so", ba_test_llama_dir());
    return access(probe, R_OK) == 0;
}

#define BA_TEST_LLAMA_OR_SKIP()                                                                              \
    do {                                                                                                     \
        if (!ba_test_llama_present())                                                                        \
            cr_skip_test("llama.cpp libraries not installed (%s@%s; scripts/setup or %s)",                   \
                         BA_LLAMA_NPM_PACKAGE, BA_LLAMA_NPM_VERSION, BA_LLAMA_DIR_ENV);                      \
    } while (0)

/* Writes a legacy llama-imatrix .dat file: n entries, entry e named names[e], one call, nval
 * values w(e, j). */
static inline void ba_test_write_imatrix_dat(const char *path, int32_t n, const char *const *names,
                                             int32_t nval, float (*w)(int e, int j)) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    int32_t ncall = 1;
    fwrite(&n, 4, 1, f);
    for (int e = 0; e < n; e++) {
        int32_t len = (int32_t)strlen(names[e]);
        fwrite(&len, 4, 1, f);
        fwrite(names[e], 1, (size_t)len, f);
        fwrite(&ncall, 4, 1, f);
        fwrite(&nval, 4, 1, f);
        for (int j = 0; j < nval; j++) {
            float v = w(e, j);
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
}

static inline const ba_llama_t *ba_test_llama_open(void) {
    ba_llama_t *ll;
    ba_error err = {0};
    cr_assert_eq(ba_llama_open(ba_test_llama_dir(), &ll, &err), BA_OK, "%s", err.msg);
    return ll;
}

/* How many of dir's entries are a checkpoint conversion's temporary GGUFs (bitalloc-hf-*): a
 * command that refused or finished leaves none. */
static inline int ba_test_hf_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d, "%s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "bitalloc-hf-", 12)) n++;
    closedir(d);
    return n;
}

#endif
