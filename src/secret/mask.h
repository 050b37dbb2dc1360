/* The log masker: replaces every secret value given to a run, and the forms
 * of it a job is likely to print, by "[MASKED]" before output is stored or
 * streamed (SPEC §8 "Logs", §9).
 *
 * Patterns derived from each value (each at least 8 bytes long):
 *   - the value itself;
 *   - its standard base64 at the three alignments: for k = 0, 1, 2 the value
 *     is encoded after k filler bytes, and the pattern is the output
 *     characters j with ceil(8k/6) <= j < floor(8(k+n)/6), i.e. exactly the
 *     characters whose 6 bits all come from the value (no padding, no
 *     character mixing filler bits or bits of whatever follows the value);
 *   - its URL-encoding: every byte outside A-Za-z0-9-._~ as %XX, upper-case
 *     hex (only if it differs from the value);
 *   - its JSON-escaped string body as jansson writes it: \" \\ \b \f \n \r \t,
 *     other bytes below 0x20 as \u00XX (upper-case hex, and also the
 *     lower-case variant other encoders use), all other bytes as they are;
 *   - for a value holding '\n': each line (a trailing '\r' dropped) that is
 *     at least 8 bytes long.
 * Not caught: values the job transforms otherwise (reversed, hex, base64
 * wrapped across lines, form-encoded '+').
 *
 * All patterns go into one Aho-Corasick automaton built once per run; a
 * stream is scanned in one pass whatever the number of secrets (a dense
 * transition table over the byte classes the patterns use, about
 * 4 * (total pattern bytes) * (distinct pattern bytes) bytes, capped at
 * 256 MiB). Matched ranges that overlap or touch are merged and replaced by a
 * single marker, so the output does not depend on how writes were cut. */
#ifndef UH_SECRET_MASK_H
#define UH_SECRET_MASK_H

#include <stddef.h>

#include "util/buf.h"
#include "util/error.h"

#define UH_MASK_MARKER  "[MASKED]"
#define UH_MASK_MIN_LEN 8
#define UH_MASK_STDOUT  1
#define UH_MASK_STDERR  2
#define UH_MASK_SYSTEM  3

struct uh_masker;

struct uh_mask_value {
	const char *data;
	size_t len;
};

/* Build a masker for `n` values (n may be 0: bytes then pass through
 * untouched and unheld). The values are not kept; what is derived from them
 * lives in memory that is mlock()ed when possible and wiped on free.
 * UH_E_INVALID_CONFIG if a value is shorter than UH_MASK_MIN_LEN bytes or the
 * values are too large to index; UH_E_INTERNAL on ENOMEM. */
int uh_masker_new(const struct uh_mask_value *values, size_t n, struct uh_masker **out, struct uh_error *err);

/* Feed `len` bytes of `stream` (UH_MASK_STDOUT, UH_MASK_STDERR or UH_MASK_SYSTEM; each has
 * its own state). Masked output is appended to `out`; bytes that may still be
 * the start of a match (at most the longest pattern's length) are held back
 * until a later feed or flush decides them. 0, an error from `out`
 * (UH_E_PAYLOAD_TOO_LARGE), or UH_E_INTERNAL for a bad stream; after an error
 * the stream's output is incomplete. */
int uh_masker_feed(struct uh_masker *m, int stream, const char *data, size_t len, struct uh_buf *out);

/* End of `stream`: append what was held back (masked) and reset the stream,
 * so it may be used again from a clean state. */
int uh_masker_flush(struct uh_masker *m, int stream, struct uh_buf *out);

/* Wipe and free; NULL is fine. */
void uh_masker_free(struct uh_masker *m);

#endif
