/* Internals of the Local backend shared by local*.c (not for other modules). */
#ifndef UH_BACKEND_LOCAL_IMPL_H
#define UH_BACKEND_LOCAL_IMPL_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"
#include "util/error.h"

/* ---- local_check.c: what validate() and start() both check ---- */

/* The backend's view of an effective config. */
struct local_conf {
	bool has_workdir;
	char workdir[PATH_MAX]; /* resolved, under local.allowed_workdirs */
	bool net_none;
	int64_t cpu_milli; /* 0: none given */
	int64_t mem_bytes; /* 0: none given */
};

/* Keys of execution_backend_config (config may be NULL: all defaults).
 * Errors: UH_E_INVALID_CONFIG naming "execution_backend_config.KEY". */
int local_conf_parse(const struct uh_config *cfg, const json_t *config, struct local_conf *c, struct uh_error *err);

/* The command: an array of strings whose first is an absolute path to an
 * executable allowed by local.allowed_executables (symlinks followed, the
 * resolved file compared by path and by device/inode, root-owned and not
 * group/other-writable, in such directories). Shape errors are
 * UH_E_INVALID_REQUEST "command"; refusals of the executable are `code` with
 * `field`. With fdp, *fdp receives the checked file as an O_PATH|O_CLOEXEC
 * fd: the file to execute, never re-opened by path. */
int local_check_command(const struct uh_config *cfg, const json_t *command, int *fdp, int code, const char *field,
                        struct uh_error *err);

/* NULL if `name` may be set in a job's environment, else why not. UHUB_*
 * names pass only with allow_uhub (the supervisor's own variables). */
const char *local_env_name_refused(const char *name, bool allow_uhub);

/* ---- local_fs.c: scratch directories ---- */

/* mkdir -p: parents 0755, the last `mode`; an existing one is fine. -errno. */
int local_mkdir_p(const char *path, mode_t mode);

/* Make the work root (0711, root-owned, not group/other-writable; created
 * with its parents if missing) and return its resolved path (malloc'd). */
int local_work_root(const char *path, char **resolved, struct uh_error *err);

/* Create <root>/<run_id> (0700) with home/ and tmp/ inside, all owned by
 * uid:gid. An old directory of that name is removed first. */
int local_scratch_create(const char *root, const char *run_id, uid_t uid, gid_t gid, struct uh_error *err);

/* Remove <root>/<name> and everything below without following a symlink.
 * 0 when gone (or absent), else -errno. */
int local_scratch_remove(const char *root, const char *name);
/* Keep a finished run's scratch dir for a later run, when it holds nothing
 * but its empty home/ and tmp/: made root's (0700) and renamed to `slot`.
 * 0 when parked, 1 when not empty (remove it), -errno on error. */
int local_scratch_park(const char *root, const char *run_id, const char *slot);
/* A parked dir becomes RUN_ID's scratch dir, owned by uid/gid. -errno. */
int local_scratch_unpark(const char *root, const char *slot, const char *run_id, uid_t uid, gid_t gid);

/* Owner of <root>/<name> (not following symlinks); -1 if absent. */
int64_t local_scratch_owner(const char *root, const char *name);

/* run ids are used as path names: [A-Za-z0-9_-]{1,UH_ID_MAX-1}. */
bool local_safe_name(const char *s);

#endif
