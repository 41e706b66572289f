/* The LLM tests' shared fixture: the tiny trained llama GGUF and the pinned llama.cpp libraries
 * (scripts/setup installs them under build/vendor/llama; BA_LLAMA_DIR overrides). Tests that need
 * the libraries are skipped with a message when they are not installed. */
#ifndef BA_TESTS_LLM_FIXTURE_H
#define BA_TESTS_LLM_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
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

static inline const ba_llama_t *ba_test_llama_open(void) {
    ba_llama_t *ll;
    ba_error err = {0};
    cr_assert_eq(ba_llama_open(ba_test_llama_dir(), &ll, &err), BA_OK, "%s", err.msg);
    return ll;
}

#endif
