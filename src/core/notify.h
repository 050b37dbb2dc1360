/* Wake-ups for whoever waits on a run (log followers): the supervisor calls
 * uh_notify_run after it stored new output or changed the run's status; every
 * watcher of that run gets its callback, on the notifier's thread. Callbacks
 * must be short and must not call back into this module. After
 * uh_notify_unwatch returns, the callback is not running and never will. */
#ifndef UH_CORE_NOTIFY_H
#define UH_CORE_NOTIFY_H

typedef void (*uh_notify_fn)(void *arg);

struct uh_watch;

struct uh_watch *uh_notify_watch(const char *run_id, uh_notify_fn fn, void *arg);
void uh_notify_unwatch(struct uh_watch *w);
void uh_notify_run(const char *run_id);
/* Wake every watcher (shutdown, heartbeat ticks). */
void uh_notify_all(void);
/* What a watcher's wake-up queued but could not do under the notifier's
 * lock (the API resuming a suspended follower), done by uh_notify_flush()
 * on the caller's thread with no lock held: the supervisor calls it after
 * its wake-ups, which spares the follower a hop through another thread.
 * Set at start-up and cleared before the watcher's side stops. */
void uh_notify_set_flush(uh_notify_fn fn, void *arg);
void uh_notify_flush(void);

#endif
