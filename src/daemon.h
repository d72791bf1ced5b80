/*
 * daemon.h — what running as a service needs: a pidfile that refuses a second
 * daemon, and the systemd readiness protocol (Type=notify) without libsystemd.
 */
#ifndef SL_DAEMON_H
#define SL_DAEMON_H

/* Creates and locks path, writes our pid. Returns the open descriptor (keep it
 * until exit), or -1 after printing why (another daemon holds it: its pid). */
int sl_pidfile_acquire(const char *path);

/* Releases and removes the pidfile. */
void sl_pidfile_release(int fd, const char *path);

/* Sends state ("READY=1", "STOPPING=1", "STATUS=…") to $NOTIFY_SOCKET if set. */
void sl_notify(const char *state);

#endif
