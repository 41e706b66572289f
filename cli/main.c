/* bitalloc command-line entry point (placeholder until cli/ lands). */
#include <stdio.h>

#include "bitalloc.h"

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("bitalloc %s\n", BA_VERSION);
    return 0;
}
