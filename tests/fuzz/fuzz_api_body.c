/* Fuzz target for the API's request parsing and validation (src/api): the
 * first byte picks what the rest of the input is fed to -- a request body
 * for each route that takes one (through uh_json_parse, as the server
 * does), a merge patch over a stored object, a query value, a header, a
 * path for the router, or log output for the renderers. Nothing may crash,
 * leak or loop; a refusal must name a code and a message. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "util/json.h"

static json_t *project_with_prefix, *project_plain, *prod_project;

static void init(void)
{
	if (project_with_prefix)
		return;
	project_with_prefix = json_loads("{\"name\":\"p\",\"environment\":\"dev\",\"execution_backend\":\"local\","
	                                 "\"execution_backend_config\":{},\"vault_prefix\":\"team/app\"}",
	                                 0, NULL);
	project_plain = json_loads("{\"name\":\"p\",\"environment\":\"staging\",\"execution_backend\":\"docker\","
	                           "\"execution_backend_config\":{\"image\":\"x\"},\"vault_prefix\":null}",
	                           0, NULL);
	prod_project = json_loads("{\"name\":\"p\",\"environment\":\"prod\",\"execution_backend\":\"docker\","
	                          "\"execution_backend_config\":{},\"vault_prefix\":null,\"max_concurrent\":null}",
	                          0, NULL);
}

static void check_err(int rc, const struct uh_error *e)
{
	if (rc && (rc != e->code || !e->message[0] || uh_errno_status(rc) < 400))
		abort();
}

static void body(uint8_t which, const char *d, size_t n)
{
	struct uh_error e = {0};
	json_t *in = uh_json_parse(d, n, true, &e);
	if (!in) {
		check_err(e.code, &e);
		return;
	}
	json_t *f = NULL, *params = NULL;
	const char *s1, *s2;
	int i1, rc = 0;
	int64_t t;
	switch (which % 10) {
	case 0:
		rc = uh_api_validate_project(in, &f, &e);
		if (!rc) {
			/* a valid project through the loosening checks both ways */
			uh_api_project_loosening(prod_project, f, NULL);
			uh_api_project_loosening(f, prod_project, NULL);
			json_decref(uh_api_changed(prod_project, f));
		}
		break;
	case 1:
		rc = uh_api_validate_job(in, project_with_prefix, &f, &e);
		if (!rc)
			uh_api_job_loosening(prod_project, NULL, f, NULL);
		break;
	case 2:
		rc = uh_api_validate_job(in, project_plain, &f, &e);
		break;
	case 3:
		rc = uh_api_validate_user_create(in, &s1, &s2, &e);
		break;
	case 4:
		rc = uh_api_validate_user_patch(in, &s1, &i1, &e);
		break;
	case 5:
		rc = uh_api_validate_token_create(in, 1700000000LL * 1000000, &t, &e);
		break;
	case 6:
		rc = uh_api_validate_member(in, &s1, &e);
		break;
	case 7:
		rc = uh_api_validate_trigger(in, &params, &e);
		break;
	case 8: {
		/* PATCH of a project: merge, then the whole result */
		json_t *doc = json_deep_copy(prod_project);
		uh_json_merge_patch(doc, in);
		uh_api_project_loosening(prod_project, doc, NULL);
		rc = uh_api_validate_project(doc, &f, &e);
		json_decref(doc);
		break;
	}
	default: {
		json_t *old = json_loads("{\"name\":\"j\",\"command\":[\"/bin/true\"],\"critical\":true,\"env\":{},"
		                         "\"secrets\":{},\"parameters\":[],\"retries\":0}",
		                         0, NULL);
		json_t *doc = json_deep_copy(old);
		uh_json_merge_patch(doc, in);
		uh_api_job_loosening(prod_project, old, doc, NULL);
		rc = uh_api_validate_job(doc, project_with_prefix, &f, &e);
		if (!rc)
			uh_api_check_secret_refs(json_object_get(f, "secrets"), project_with_prefix, NULL);
		json_decref(doc);
		json_decref(old);
		break;
	}
	}
	check_err(rc, &e);
	if (rc && f)
		abort(); /* a refusal hands nothing out */
	json_decref(f);
	json_decref(params);
	json_decref(in);
}

static void text(uint8_t which, const char *s, const char *d, size_t n)
{
	struct uh_error e = {0};
	int limit;
	const char *before;
	bool b;
	size_t len;
	switch (which % 6) {
	case 0:
		check_err(uh_api_parse_limit(s, &limit, &e), &e);
		check_err(uh_api_parse_cursor(s, &before, &e), &e);
		check_err(uh_api_parse_bool(s, "follow", &b, &e), &e);
		check_err(uh_api_parse_id_filter(s, "job", &e), &e);
		break;
	case 1: {
		const char *tok = uh_api_bearer(s, &len);
		if (tok && (len == 0 || len > 512))
			abort();
		uh_api_media_ok(s, true);
		uh_api_idem_key_ok(s);
		uh_api_name_ok(s);
		uh_api_param_name_ok(s);
		uh_api_env_name_ok(s);
		break;
	}
	case 2: {
		static const char *const methods[] = {"GET", "POST", "PATCH", "DELETE", "PUT"};
		for (int m = 0; m < 5; m++) {
			const struct uh_api_route *rt;
			char params[UH_API_MAX_PARAMS][UH_API_PARAM_MAX], allow[64];
			int rc = uh_api_route_match(methods[m], s, &rt, params, allow, sizeof(allow));
			if (!rc && (!rt || !rt->handler))
				abort();
			/* Every parameter handed out is valid for its kind: a {name} a
			 * secret name, any other an id. */
			int i = 0;
			for (const char *q = rc ? NULL : strchr(rt->pattern, '{'); q && i < UH_API_MAX_PARAMS;
			     q = strchr(q + 1, '{'), i++) {
				bool is_name = strncmp(q, "{name}", 6) == 0;
				if (is_name ? !uh_api_name_ok(params[i]) : !uh_api_id_ok(params[i], strlen(params[i])))
					abort();
			}
		}
		break;
	}
	default: {
		/* log output, cut in two, through the sanitizer and framings */
		size_t cut = n ? (uint8_t)d[0] % (n + 1) : 0;
		struct uh_buf out = UH_BUF_INIT(1 << 22), frame = UH_BUF_INIT(1 << 24);
		struct uh_utf8 dec = {0};
		uh_utf8_feed(&dec, d, cut, &out);
		uh_utf8_feed(&dec, d + cut, n - cut, &out);
		uh_utf8_flush(&dec, &out);
		json_t *j = json_stringn(out.data ? out.data : "", out.len);
		if (!j)
			abort(); /* the sanitizer must give valid UTF-8 */
		json_decref(j);
		uh_logfmt_sse(&frame, "log", (int64_t)n, out.data ? out.data : "", out.len);
		uh_logfmt_ndjson(&frame, 1, which & 3, out.data ? out.data : "", out.len);
		uh_logfmt_gap_text(&frame, (int64_t)n);
		uh_buf_free(&out);
		uh_buf_free(&frame);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	if (size < 1 || size > (1u << 20))
		return 0;
	uint8_t sel = data[0];
	const char *d = (const char *)data + 1;
	size_t n = size - 1;
	if (sel < 160) {
		body(sel, d, n);
	} else {
		char *s = malloc(n + 1);
		if (!s)
			return 0;
		memcpy(s, d, n);
		s[n] = '\0';
		text((uint8_t)(sel - 160), s, d, n);
		free(s);
	}
	return 0;
}
