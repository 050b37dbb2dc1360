/* The supervisor: one libuv loop that dispatches queued runs to their
 * backends, watches every running run (the backends register their fds and
 * timers on this loop: no thread per run), batches their output into the
 * store, enforces timeouts and cancels, and settles runs after a restart. */
#ifndef UH_DAEMON_SUPERVISOR_H
#define UH_DAEMON_SUPERVISOR_H

#include <uv.h>

#include "core/config.h"
#include "store/store.h"
#include "util/error.h"

struct uh_supervisor;

int uh_supervisor_new(uv_loop_t *loop, struct uh_store *store, const struct uh_config *cfg, struct uh_supervisor **out,
                      struct uh_error *err);
/* Settle runs a previous daemon left running (lost, daemon_restart), after
 * making sure nothing of them remains. Call once before serving. */
int uh_supervisor_recover(struct uh_supervisor *s, struct uh_error *err);
/* Thread-safe: a run was queued. */
void uh_supervisor_kick(void *s);
/* Thread-safe: stop a queued or running run (cancel already recorded). */
void uh_supervisor_cancel(void *s, const char *run_id);
/* Thread-safe: hand a verified callback body to the running run `run_id`
 * (webhook `callback` mode) and wait (at most 10 s) for the loop's answer:
 * 0 when the run took it (it then leaves `running`), UH_E_NOT_FOUND when
 * the run is not running here, UH_E_CONFLICT when its backend refused it
 * (already ended, not waiting for a callback), UH_E_UNAVAILABLE on
 * timeout. `body` is copied. */
int uh_supervisor_callback(void *s, const char *run_id, json_t *body);
/* Begin shutdown: no new dispatch; running runs get `grace_s` seconds, then
 * are canceled with reason shutdown. `done` is called on the loop thread
 * once nothing runs. A second call ends faster (grace 0). */
void uh_supervisor_drain(struct uh_supervisor *s, int64_t grace_s, void (*done)(void *arg), void *arg);
/* Use `cfg` for runs dispatched from now on (SIGHUP). The previous config
 * must stay valid while runs started under it are in flight. Loop thread. */
void uh_supervisor_set_config(struct uh_supervisor *s, const struct uh_config *cfg);
/* Vault for runs' `vault:` references (NULL: none). Before serving. */
struct uh_vault;
void uh_supervisor_set_vault(struct uh_supervisor *s, struct uh_vault *vault);
/* Number of runs in flight. */
size_t uh_supervisor_active(const struct uh_supervisor *s);
void uh_supervisor_free(struct uh_supervisor *s);

#endif
