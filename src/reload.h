/*
 * reload.h — watching handler and library directories for changes (inotify on
 * an ev_io), so the daemon reloads edited, added or removed files within a
 * second. Events are coalesced: the callback runs once, 100 ms after the last.
 */
#ifndef SL_RELOAD_H
#define SL_RELOAD_H

struct ev_loop;
struct sl_config;
typedef struct sl_watch sl_watch;

typedef void (*sl_watch_fn)(void *data);

/* Watches cfg's handler dirs and Lua library roots. NULL (and a log line) when
 * inotify is unavailable; SIGHUP still reloads then. */
sl_watch *sl_watch_start(struct ev_loop *loop, const struct sl_config *cfg, sl_watch_fn fn,
                         void *data);
void sl_watch_stop(sl_watch *w);

#endif
