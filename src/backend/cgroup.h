/* Per-run cgroups for the Local backend: pids, memory and CPU limits, OOM
 * detection, and whole-tree kill.
 *
 * Works on cgroup v1, v2, and hybrid hosts (v1 controllers plus a v2 mount
 * without controllers, used for cgroup.kill and cgroup.events). Each run gets
 * `<hierarchy>/uhub/<run_id>` in every hierarchy used. A controller the host
 * does not offer is skipped (uh_cg_setup says so once); nothing here aborts.
 * Not thread-safe past uh_cg_setup: call from the supervisor thread. */
#ifndef UH_BACKEND_CGROUP_H
#define UH_BACKEND_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

#define UH_CG_MAX 4 /* hierarchies per run: v1 pids, memory, cpu + v2 */

struct uh_cg_limits {
	int64_t pids_max;  /* <= 0: none */
	int64_t mem_bytes; /* <= 0: none */
	int64_t cpu_milli; /* <= 0: none */
};

/* Detect the layout (once) and create the `uhub` parents. Returns a warning
 * for the log when some controller is unavailable, else NULL. */
const char *uh_cg_setup(void);
/* A few words on the layout, e.g. "v1 pids,memory,cpu + v2 (kill)". */
const char *uh_cg_describe(void);
/* Whether every limit can be enforced and a run can be killed as a whole. */
bool uh_cg_complete(void);

/* Create the run's cgroups with limits, and open each cgroup.procs for
 * writing (O_CLOEXEC) into fds (*nfds of them) for uhub-init to join. On
 * failure nothing of the run's cgroups remains. */
int uh_cg_create(const char *run_id, const struct uh_cg_limits *lim, int fds[UH_CG_MAX], int *nfds,
                 struct uh_error *err);
/* SIGKILL every process of the run (cgroup.kill where there is one, and
 * every pid listed). Returns how many pids were still listed. */
int uh_cg_kill(const char *run_id);
/* 1 if a process remains in any of the run's cgroups, else 0. */
int uh_cg_populated(const char *run_id);
/* True if the memory limit killed a process of the run. */
bool uh_cg_oom(const char *run_id);
/* rmdir the run's cgroups. 0 when none remains, -EBUSY while populated. */
int uh_cg_remove(const char *run_id);
/* The same, at the run's end: an emptied cgroup is parked for a later run
 * (renamed; v1 only) instead, unless it saw an OOM kill or holds much
 * memory. uh_cg_create takes parked ones first and rewrites every limit. */
int uh_cg_release(const char *run_id);
/* rmdir the parked cgroups (at shutdown). */
void uh_cg_pool_drop(void);
/* Kill until empty (bounded by timeout_ms, sleeping in between) and remove.
 * For settle and start-up sweeps, not for the event loop. 0 when gone. */
int uh_cg_destroy_sync(const char *run_id, int timeout_ms);
/* Remove run cgroups that are empty and older than min_age_s: leftovers of
 * runs whose daemon died; and, whatever their age, the parked cgroups of a
 * daemon no longer running. Never kills: a populated cgroup (possibly
 * another daemon's run on this host) stays. Returns how many were removed. */
int uh_cg_sweep_empty(int min_age_s);

#endif
