/* Fuzz target for what the webhook backend reads from a remote answer
 * (src/backend/webhook_preset.c): JSON pointers, scalar extraction, status
 * mapping, callback body shape, and template expansion with values taken
 * from the answer. The input is split at the first NUL: before it a JSON
 * pointer, after it the answer. Properties: no crash; a pointer that
 * resolves yields a value of the document; URL-escaped expansions contain
 * only unreserved characters and '%'; JSON-escaped ones load back as the
 * same string. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/webhook.h"
#include "util/json.h"

static const char *lookup(void *arg, const char *name)
{
	return strcmp(name, "v") == 0 ? (const char *)arg : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t plen = nul ? (size_t)(nul - data) : size;
	char *ptr = malloc(plen + 1);
	if (!ptr)
		return 0;
	memcpy(ptr, data, plen);
	ptr[plen] = '\0';
	const char *ans = nul ? (const char *)nul + 1 : "";
	size_t alen = nul ? size - plen - 1 : 0;

	(void)uh_webhook_pointer_ok(ptr);
	json_t *doc = uh_json_parse(ans, alen, false, NULL);
	if (doc) {
		const json_t *v = uh_webhook_pointer_get(doc, ptr);
		char buf[64];
		const char *s = uh_webhook_scalar(v, buf, sizeof(buf));
		json_t *ok = json_pack("[s,s]", "success", "Completed");
		json_t *ko = json_pack("[s,s]", "failed", "Terminated");
		(void)uh_webhook_map_status(doc, ptr, ok, ko);
		(void)uh_webhook_callback_body_ok(doc);
		json_decref(ok);
		json_decref(ko);
		if (s) {
			char *out = NULL;
			if (uh_webhook_expand("{{v}}", UH_WH_ESC_URL, lookup, (void *)s, &out, NULL) == 0) {
				for (const char *p = out; *p; p++)
					if (!isalnum((unsigned char)*p) && !strchr("-._~%", *p))
						abort();
				free(out);
			}
			if (uh_webhook_expand("\"{{v}}\"", UH_WH_ESC_JSON, lookup, (void *)s, &out, NULL) == 0) {
				json_t *back = json_loads(out, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
				if (!back || !json_is_string(back) || strcmp(json_string_value(back), s) != 0)
					abort();
				json_decref(back);
				free(out);
			}
		}
		json_decref(doc);
	}
	/* the pointer as a template, too */
	char *out = NULL;
	if (uh_webhook_expand(ptr, UH_WH_ESC_JSON, lookup, "x", &out, NULL) == 0)
		free(out);
	free(ptr);
	return 0;
}
