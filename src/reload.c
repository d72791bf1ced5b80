/*
 * reload.c — directory watching for hot reload (see reload.h).
 *
 * One inotify descriptor watches every handler directory and every Lua library
 * directory (recursively for library roots, so lua/sluice/ is covered); any
 * change to a *.lua file arms a 100 ms timer, and the timer calls back once.
 */
#include "reload.h"
#include "config.h"
#include "log.h"

#include <dirent.h>
#include <ev.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF |       \
     IN_ATTRIB)

struct sl_watch {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer debounce;
    sl_watch_fn fn;
    void *data;
};

static void add_tree(sl_watch *w, const char *dir, int depth)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return;
    if (inotify_add_watch(w->fd, dir, WATCH_MASK) < 0) {
        sl_log(SL_WARN, "cannot watch directory for reloads", "dir", dir, NULL);
        return;
    }
    if (depth <= 0) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) add_tree(w, path, depth - 1);
    }
    closedir(d);
}

static void debounce_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_watch *w = t->data;
    w->fn(w->data);
}

static int is_lua(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".lua") == 0;
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    sl_watch *w = io->data;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n = read(w->fd, buf, sizeof buf);
    int relevant = 0;
    for (char *p = buf; n > 0 && p < buf + n;) {
        struct inotify_event *e = (struct inotify_event *)p;
        if ((e->mask & (IN_DELETE_SELF | IN_Q_OVERFLOW)) || (e->len > 0 && is_lua(e->name)))
            relevant = 1;
        p += sizeof *e + e->len;
    }
    if (!relevant) return;
    ev_timer_stop(loop, &w->debounce);
    ev_timer_set(&w->debounce, 0.1, 0);
    ev_timer_start(loop, &w->debounce);
}

sl_watch *sl_watch_start(struct ev_loop *loop, const sl_config *cfg, sl_watch_fn fn, void *data)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        sl_log(SL_WARN, "inotify unavailable: handlers reload on SIGHUP only", NULL);
        return NULL;
    }
    sl_watch *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        sl_log(SL_WARN, "cannot watch the handlers (out of memory): they reload on SIGHUP only",
               NULL);
        return NULL;
    }
    w->loop = loop;
    w->fd = fd;
    w->fn = fn;
    w->data = data;
    for (int i = 0; i < cfg->n_handler_dirs; i++)
        add_tree(w, cfg->handler_dirs[i], 0);
    for (int i = 0; i < cfg->n_lua_dirs; i++)
        add_tree(w, cfg->lua_dirs[i], 4);
    add_tree(w, SLUICE_SOURCE_DIR "/lua", 4);
    ev_io_init(&w->io, io_cb, fd, EV_READ);
    w->io.data = w;
    ev_io_start(loop, &w->io);
    ev_init(&w->debounce, debounce_cb);
    w->debounce.data = w;
    return w;
}

void sl_watch_stop(sl_watch *w)
{
    if (!w) return;
    ev_io_stop(w->loop, &w->io);
    ev_timer_stop(w->loop, &w->debounce);
    close(w->fd);
    free(w);
}
