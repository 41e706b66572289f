/* Bit-widths (SPEC §3): the one list of valid widths and the one parser of a
 * width list ("2,4,8", or llama.cpp type names "q4_k,q8_0"), used by the flags, the study settings, the
 * search problem, latency tables, the quantizer, plans and sensitivity tables. */
#ifndef BA_CORE_BITS_H
#define BA_CORE_BITS_H

#include "core/error.h"

/* Widths a weight or activation may take: 2..8 (integer), 16 (fp16), 32 (unchanged). */
#define BA_BITS_MIN_INT 2
#define BA_BITS_MAX_INT 8
#define BA_BITS_FP16 16
#define BA_BITS_FP32 32
/* The same list as words, for messages. */
#define BA_BITS_WIDTHS "2..8, 16 or 32"
/* How many widths there are, so the most a list without repeats can hold. */
#define BA_BITS_MAX_CANDIDATES 9
/* Default candidates of --bits: the integer widths of SPEC §3 that common
 * kernels implement or pack well; 7 is left out (no hardware has 7-bit
 * kernels, and it adds a column per layer to every sensitivity run). */
#define BA_BITS_DEFAULT "2,3,4,5,6,8"

/* 1 when b is one of the widths above. */
int ba_bits_valid(long long b);

/* "8,2,4" → {8,2,4} in the order given (bits: BA_BITS_MAX_CANDIDATES entries).
 * An item may also be the llama.cpp type a width stands for (core/ggml_types.h,
 * case-insensitive): "q4_k,q6_k,q8_0" → {4,6,8}. BA_ERR_INPUT without a flag
 * name (the caller prefixes its flag): an empty list or item, a word that is no
 * ggml type or a ggml type no width stands for (iq4_xs), a width not in the
 * list above, a repeat (q8_0 and 8). */
ba_status ba_bits_parse_list(const char *list, int *bits, int *n, ba_error *err);
/* The same; *named (may be NULL) is 1 when an item was a ggml type name, so the
 * caller can take the list as a llama.cpp target. */
ba_status ba_bits_parse_list_named(const char *list, int *bits, int *n, int *named, ba_error *err);
/* The same, sorted ascending: a set of candidate widths. */
ba_status ba_bits_parse(const char *list, int *bits, int *n, ba_error *err);

#endif
