/* What the Local backend refuses, checked at job save/trigger (validate) and
 * again right before a run starts: config keys, the executable, env names. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/local_impl.h"

#define CFG "execution_backend_config"

/* ---- config ---- */

static bool path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return true;
	return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

int local_conf_parse(const struct uh_config *cfg, const json_t *config, struct local_conf *c, struct uh_error *err)
{
	memset(c, 0, sizeof(*c));
	if (!config)
		return 0;
	if (!json_is_object(config))
		return uh_error_set(err, UH_E_INVALID_CONFIG, CFG, "'%s' must be a JSON object", CFG);
	int r = uh_backend_limits(config, &c->cpu_milli, &c->mem_bytes, err);
	if (r)
		return r;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)config, key, v)
	{
		if (uh_backend_common_key(key))
			continue; /* timeout_seconds is checked and capped by backend.c */
		if (strcmp(key, "network") == 0) {
			const char *s = json_string_value(v);
			if (!s || (strcmp(s, "host") != 0 && strcmp(s, "none") != 0))
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".network",
				                    "'%s.network' must be \"host\" or \"none\"", CFG);
			c->net_none = strcmp(s, "none") == 0;
		} else if (strcmp(key, "working_dir") == 0) {
			const char *s = json_string_value(v);
			if (!s || s[0] != '/')
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".working_dir",
				                    "'%s.working_dir' must be an absolute path", CFG);
			char *real = realpath(s, NULL);
			if (!real)
				return uh_error_set(err, UH_E_INVALID_CONFIG, CFG ".working_dir",
				                    "'%s.working_dir' '%s' cannot be resolved: %s", CFG, s,
				                    strerror(errno));
			struct stat st;
			bool ok = stat(real, &st) == 0 && S_ISDIR(st.st_mode) && strlen(real) < sizeof(c->workdir);
			for (size_t i = 0; ok && i < cfg->local.allowed_workdirs.n; i++) {
				char *dir = realpath(cfg->local.allowed_workdirs.v[i], NULL);
				bool in = dir && path_under(real, dir);
				free(dir);
				if (in) {
					snprintf(c->workdir, sizeof(c->workdir), "%s", real);
					c->has_workdir = true;
					break;
				}
			}
			free(real);
			if (!c->has_workdir)
				return uh_error_set(
				    err, UH_E_INVALID_CONFIG, CFG ".working_dir",
				    "'%s.working_dir' '%s' is not a directory under local.allowed_workdirs", CFG, s);
		} else {
			char f[128];
			snprintf(f, sizeof(f), CFG ".%s", key);
			return uh_error_set(err, UH_E_INVALID_CONFIG, f,
			                    "unknown key '%s' for backend 'local' (working_dir, network, "
			                    "timeout_seconds, cpu_limit, mem_limit)",
			                    f);
		}
	}
	return 0;
}

/* ---- the executable ---- */

static bool root_only_writable(const struct stat *st)
{
	return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

/* Every directory from "/" down to the file's: root-owned, not g/o-writable. */
static const char *bad_dir(const char *resolved, char *buf, size_t size)
{
	size_t n = strlen(resolved);
	if (n >= size)
		return resolved;
	memcpy(buf, resolved, n + 1);
	for (char *slash = strrchr(buf, '/'); slash; slash = strrchr(buf, '/')) {
		if (slash == buf)
			slash[1] = 0;
		else
			*slash = 0;
		struct stat st;
		if (stat(buf, &st) || !S_ISDIR(st.st_mode) || !root_only_writable(&st))
			return buf;
		if (slash == buf)
			break;
	}
	return NULL;
}

int local_check_command(const struct uh_config *cfg, const json_t *command, int *fdp, int code, const char *field,
                        struct uh_error *err)
{
	if (!json_is_array(command) || json_array_size(command) == 0)
		return uh_error_set(err, UH_E_INVALID_REQUEST, "command",
		                    "'command' must be a non-empty array of strings for backend 'local'");
	size_t i;
	json_t *a;
	json_array_foreach(command, i, a)
	{
		if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
			return uh_error_set(err, UH_E_INVALID_REQUEST, "command",
			                    "'command[%zu]' must be a string without NUL bytes", i);
	}
	const char *path = json_string_value(json_array_get(command, 0));
	if (path[0] != '/')
		return uh_error_set(err, code, field, "'command' executable '%s' must be an absolute path", path);

	/* The file is opened once; everything below is checked on that open
	 * file, and that descriptor is what gets executed. */
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return uh_error_set(err, code, field, "'command' executable '%s' cannot be opened: %s", path,
		                    strerror(errno));
	char link[64], resolved[PATH_MAX], dirbuf[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t rl = readlink(link, resolved, sizeof(resolved) - 1);
	struct stat st;
	int r = 0;
	if (rl <= 0 || fstat(fd, &st)) {
		r = uh_error_set(err, code, field, "'command' executable '%s' cannot be resolved: %s", path,
		                 strerror(errno));
		goto out;
	}
	resolved[rl] = 0;

	bool listed = false;
	for (size_t k = 0; k < cfg->local.allowed_executables.n && !listed; k++) {
		const char *entry = cfg->local.allowed_executables.v[k];
		struct stat es;
		if (!entry || entry[0] != '/' || stat(entry, &es) || es.st_dev != st.st_dev || es.st_ino != st.st_ino)
			continue;
		/* Same inode: also the same resolved path (a hard link elsewhere is not the entry). */
		char *real = realpath(entry, NULL);
		listed = real && strcmp(real, resolved) == 0;
		free(real);
	}
	if (!listed) {
		r = uh_error_set(err, code, field,
		                 "'command' executable '%s' (resolved to '%s') is not in local.allowed_executables",
		                 path, resolved);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = uh_error_set(err, code, field, "'command' executable '%s' is not a regular file", path);
		goto out;
	}
	if (!root_only_writable(&st)) {
		r = uh_error_set(err, code, field,
		                 "'command' executable '%s' must be owned by root and not writable by group or others",
		                 resolved);
		goto out;
	}
	const char *bad = bad_dir(resolved, dirbuf, sizeof(dirbuf));
	if (bad) {
		r = uh_error_set(err, code, field,
		                 "'command' directory '%s' of '%s' must be owned by root and not writable by group or "
		                 "others",
		                 bad, resolved);
		goto out;
	}
	if (fdp) {
		*fdp = fd;
		fd = -1;
	}
out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* ---- environment names ---- */

/* Variables that make an allowed program run other code or change how it
 * parses its input, and those the backend sets itself. */
static const char *const refused_exact[] = {
    "BASH_ENV",      "ENV",         "SHELLOPTS",        "BASHOPTS",       "PS4",         "IFS",
    "PERLLIB",       "RUBYOPT",     "RUBYLIB",          "NODE_OPTIONS",   "NODE_PATH",   "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS", "GCONV_PATH",  "GETCONF_DIR",      "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN",
    "LOCPATH",       "RES_OPTIONS", "RESOLV_HOST_CONF", "NIS_PATH",       "NLSPATH",     "PATH",
    "HOME",          "TMPDIR",
};
static const char *const refused_prefix[] = {"LD_", "BASH_FUNC_", "PYTHON", "PERL5", "MALLOC_", "TF_CLI_ARGS"};

const char *local_env_name_refused(const char *name, bool allow_uhub)
{
	if (!name || !((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
		return "is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)";
	for (const char *p = name + 1; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return "is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)";
	if (strncmp(name, "UHUB_", 5) == 0)
		return allow_uhub ? NULL : "is reserved for uhub";
	for (size_t i = 0; i < sizeof(refused_exact) / sizeof(refused_exact[0]); i++)
		if (strcmp(name, refused_exact[i]) == 0)
			return strcmp(name, "PATH") == 0 || strcmp(name, "HOME") == 0 || strcmp(name, "TMPDIR") == 0
			           ? "is set by the local backend"
			           : "could change what the executable runs";
	for (size_t i = 0; i < sizeof(refused_prefix) / sizeof(refused_prefix[0]); i++)
		if (strncmp(name, refused_prefix[i], strlen(refused_prefix[i])) == 0)
			return "could change what the executable runs";
	size_t n = strlen(name);
	if (strncmp(name, "ANSIBLE_", 8) == 0 && n >= 13 && strcmp(name + n - 5, "_ARGS") == 0)
		return "could change what the executable runs";
	return NULL;
}
