/*
 * daemon.c — pidfile with an exclusive lock, and sd_notify-style readiness
 * messages over the datagram socket systemd names in NOTIFY_SOCKET.
 */
#include "daemon.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sl_pidfile_acquire(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        sl_cli_error("cannot open pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char buf[32] = "";
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        sl_cli_error("another sluice daemon holds %s (pid %s): refusing to start a second one",
                     path, *buf ? buf : "unknown");
        close(fd);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        sl_cli_error("cannot write pidfile %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void sl_pidfile_release(int fd, const char *path)
{
    if (fd < 0) return;
    unlink(path);
    close(fd);
}

void sl_notify(const char *state)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock || strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, sock, strlen(sock));
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sock));
    if (sock[0] == '@') addr.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%s\nMAINPID=%d", state, (int)getpid());
    (void)sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&addr, len);
    close(fd);
}
