/* Output helpers shared by the commands: aligned text tables, CSV (RFC 4180) and
 * JSON (jansson), plus human-readable numbers. Results go to stdout through these so
 * every command prints the same way. */
#ifndef BA_CLI_FORMAT_H
#define BA_CLI_FORMAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

typedef enum { BA_ALIGN_AUTO, BA_ALIGN_LEFT, BA_ALIGN_RIGHT } ba_align;

typedef struct ba_table ba_table_t;

/* A table with ncols columns; align may be NULL (AUTO everywhere: right when every
 * cell of the column is a number). Returns NULL when out of memory. */
ba_table_t *ba_table_new(size_t ncols, const char *const *headers, const ba_align *align);
void ba_table_free(ba_table_t *t);
/* Adds a row of ncols cells (NULL cells print as "-"). 0 on success, -1 out of memory. */
int ba_table_add(ba_table_t *t, const char *const *cells);
/* Adds a row from a printf format whose cells are separated by '\t'. */
int ba_table_addf(ba_table_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t ba_table_rows(const ba_table_t *t);
/* Header, then rows; columns padded to their widest cell, two spaces apart. */
void ba_table_print(const ba_table_t *t, FILE *fp);
/* Prints t as ba_table_print unless failed (a row could not be added), then frees it.
 * Returns 0, or -1 when failed. */
int ba_table_print_free(ba_table_t *t, int failed, FILE *fp);
/* The same table as CSV (header row first). */
void ba_table_print_csv(const ba_table_t *t, FILE *fp);
/* As JSON: an array of objects keyed by the headers; numeric cells become numbers. */
json_t *ba_table_to_json(const ba_table_t *t);

/* Prints t as format "table", "csv" or "json" (an array of row objects). Returns 0, or -1
 * for another format or a failed write. */
int ba_table_emit(const ba_table_t *t, const char *format, FILE *fp);

/* One CSV row, each field as ba_csv_field (core/util.h) writes it. */
void ba_csv_row(FILE *fp, size_t n, const char *const *cells);

/* Prints j indented by 2, keys in insertion order, reals with 17 digits (exact), then
 * a newline. Returns 0, or -1 when the write failed. Does not take ownership. */
int ba_json_print(FILE *fp, const json_t *j);
/* Fills object i of an array (0 <= i < n); nonzero when a value could not be set. */
typedef int ba_json_row_fn(json_t *o, int i, void *ctx);
/* Prints an array of n objects, each filled by row, as ba_json_print does. Returns 0, or
 * -1 when out of memory, a row failed or the write failed (then nothing is printed). */
int ba_json_print_rows(FILE *fp, int n, ba_json_row_fn *row, void *ctx);
/* A real, or null when v is NaN or infinite (JSON has no NaN). */
json_t *ba_json_real_or_null(double v);
/* A string; bytes that are not UTF-8 (a name stored by an older bitalloc) become U+FFFD. */
json_t *ba_json_string_lossy(const char *s);

/* The shortest text that reads back as v (%.15g, else %.17g: CSV cells); "" when v is
 * NaN or infinite. */
void ba_fmt_real(double v, char *buf, size_t cap);
/* "1.50 MiB", "312 B" */
void ba_fmt_bytes(double bytes, char *buf, size_t cap);
/* "1.20G", "3.40M", "512" (SI, for MACs and BOPs) */
void ba_fmt_count(double n, char *buf, size_t cap);

#endif
