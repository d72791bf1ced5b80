/*
 * embedded_pg.c — the private Postgres cluster under the state directory: paths,
 * initdb, start/stop through pg_ctl, status, and the connection string.
 *
 * Everything is blocking. Server programs run in a forked child that, as root,
 * switches to the `postgres` user with setgroups/setgid/setuid before exec (no su or
 * sudo). initdb and start happen under an flock on <home>/pg.lock so that two
 * sluice processes starting at once never both run initdb; a process that finds
 * the server answering only connects. initdb writes into <home>/pg/data.init,
 * which is renamed to data/ once complete, so a killed initdb leaves nothing that
 * looks like a cluster. Uses libpq (ping, create database) and sl_log.
 */
#include "embedded_pg.h"
#include "buf.h"
#include "config.h"
#include "log.h"

#include <libpq-fe.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SL_PG_PORT "5432"
#define SL_PG_SUPERUSER "postgres"
#define SL_PG_DBNAME "sluice"
#define SL_PG_OS_USER "postgres"     /* the server's user when sluice runs as root */
#define SL_PG_CTL_TIMEOUT "60"       /* seconds pg_ctl waits for start or stop */
#define SL_PG_LOCK_TIMEOUT_MS 180000 /* waiting for another sluice's initdb/start */
#define SL_PG_START_ATTEMPTS 10      /* start retries while a killed server's lock lingers */
#define SL_PG_MAX_GROUPS 256
#define SL_PG_OUT_MAX 4096 /* captured tail of a child's output */

static const char sl_pg_missing[] =
    "the embedded database needs the Postgres server (initdb, pg_ctl): install it with "
    "`apt-get install postgresql`, or set DATABASE_URL";

/* ================================================================ small helpers */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Removes trailing whitespace (and newlines) in place. */
static void rstrip(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/* From a child's output or a log tail, the line that best explains a failure: the
 * last one carrying FATAL/PANIC/ERROR/"error:", else the last non-empty one. */
static void pick_error_line(const char *text, char *dst, size_t dstlen)
{
    const char *best = NULL, *last = NULL;
    size_t bestlen = 0, lastlen = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        int blank = 1;
        for (size_t i = 0; i < len; i++)
            if (!isspace((unsigned char)line[i])) blank = 0;
        if (!blank) {
            last = line;
            lastlen = len;
            static const char *const marks[] = {"FATAL:", "PANIC:", "ERROR:", "error:", NULL};
            for (int i = 0; marks[i]; i++) {
                const char *m = memmem(line, len, marks[i], strlen(marks[i]));
                if (m) {
                    best = line;
                    bestlen = len;
                    break;
                }
            }
        }
        if (!end) break;
        line = end + 1;
    }
    if (!best) {
        best = last;
        bestlen = lastlen;
    }
    if (!best) {
        snprintf(dst, dstlen, "no output");
        return;
    }
    /* Drop a log line's "2026-… UTC [123] " prefix: keep from the severity on. */
    static const char *const sev[] = {"FATAL:", "PANIC:", "ERROR:", NULL};
    for (int i = 0; sev[i]; i++) {
        const char *m = memmem(best, bestlen, sev[i], strlen(sev[i]));
        if (m) {
            bestlen -= (size_t)(m - best);
            best = m;
            break;
        }
    }
    snprintf(dst, dstlen, "%.*s", (int)bestlen, best);
    rstrip(dst);
}

/* ================================================================ paths */

typedef struct sl_pg_paths {
    char *home;      /* absolute state directory */
    char *pgdir;     /* <home>/pg */
    char *data;      /* <home>/pg/data */
    char *data_init; /* <home>/pg/data.init: initdb's target until complete */
    char *run;       /* socket directory */
    char *log;       /* <home>/pg/server.log */
    char *lock;      /* <home>/pg.lock */
    char *url;       /* the connection string */
    int run_in_tmp;  /* run is /tmp/sluice-<hash> */
} sl_pg_paths;

static void paths_free(sl_pg_paths *p)
{
    free(p->home);
    free(p->pgdir);
    free(p->data);
    free(p->data_init);
    free(p->run);
    free(p->log);
    free(p->lock);
    free(p->url);
    memset(p, 0, sizeof *p);
}

/* Lexically removes ".", "..", and repeated slashes from an absolute path, in place. */
static void normalize_path(char *s)
{
    char *out = s;
    const char *in = s;
    while (*in) {
        while (*in == '/')
            in++;
        if (!*in) break;
        const char *end = strchr(in, '/');
        size_t n = end ? (size_t)(end - in) : strlen(in);
        if (n == 1 && in[0] == '.') {
            /* skip */
        } else if (n == 2 && in[0] == '.' && in[1] == '.') {
            while (out > s && out[-1] != '/')
                out--;
            if (out > s) out--;
        } else {
            *out++ = '/';
            memmove(out, in, n);
            out += n;
        }
        in += n;
    }
    if (out == s) *out++ = '/';
    *out = '\0';
}

/* The home directory as an absolute path: resolved if it exists, else lexically
 * normalised against the working directory. */
static char *absolute_home(const char *home)
{
    char *real = realpath(home, NULL);
    if (real) return real;
    char *joined;
    if (home[0] == '/') {
        joined = strdup(home);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (!cwd) return NULL;
        joined = xasprintf("%s/%s", cwd, home);
        free(cwd);
    }
    if (joined) normalize_path(joined);
    return joined;
}

/* 64-bit FNV-1a: names the /tmp socket directory after the home path. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* True when the socket file in dir fits in sockaddr_un.sun_path. */
static int socket_path_fits(const char *dir)
{
    struct sockaddr_un sa;
    return strlen(dir) + strlen("/.s.PGSQL." SL_PG_PORT) < sizeof sa.sun_path;
}

/* True when dir can be written into postgresql.conf's unix_socket_directories
 * (a quoted, comma-separated list) without escaping. */
static int conf_safe(const char *dir)
{
    for (const char *c = dir; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("/._-+@~=:", *c)) return 0;
    return 1;
}

/* postgresql://postgres@/sluice?host=<percent-encoded socket dir>, plus &port=5432
 * when PGPORT names another port. */
static char *make_url(const char *run)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(run);
    char *enc = malloc(n * 3 + 1), *o = enc;
    if (!enc) return NULL;
    for (const char *c = run; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (isalnum(u) || strchr("/-._~", u)) {
            *o++ = (char)u;
        } else {
            *o++ = '%';
            *o++ = hex[u >> 4];
            *o++ = hex[u & 15];
        }
    }
    *o = '\0';
    /* libpq names the socket after PGPORT when the URL has no port. */
    const char *envport = getenv("PGPORT");
    int need_port = envport && *envport && strcmp(envport, SL_PG_PORT) != 0;
    char *url = xasprintf("postgresql://%s@/%s?host=%s%s", SL_PG_SUPERUSER, SL_PG_DBNAME, enc,
                          need_port ? "&port=" SL_PG_PORT : "");
    free(enc);
    return url;
}

static int paths_init(const sl_config *cfg, sl_pg_paths *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!cfg->home || !*cfg->home) {
        sl_seterr(err, errlen, "no state directory for the embedded database (set SLUICE_HOME)");
        return -1;
    }
    p->home = absolute_home(cfg->home);
    if (!p->home) {
        sl_seterr(err, errlen, "cannot resolve the state directory %s: %s", cfg->home,
                  strerror(errno));
        return -1;
    }
    const char *h = strcmp(p->home, "/") == 0 ? "" : p->home;
    p->pgdir = xasprintf("%s/pg", h);
    p->data = xasprintf("%s/pg/data", h);
    p->data_init = xasprintf("%s/pg/data.init", h);
    p->log = xasprintf("%s/pg/server.log", h);
    p->lock = xasprintf("%s/pg.lock", h);
    p->run = xasprintf("%s/pg/run", h);
    if (p->run && (!socket_path_fits(p->run) || !conf_safe(p->run))) {
        free(p->run);
        p->run = xasprintf("/tmp/sluice-%016llx", (unsigned long long)fnv1a64(p->home));
        p->run_in_tmp = 1;
    }
    p->url = p->run ? make_url(p->run) : NULL;
    if (!p->pgdir || !p->data || !p->data_init || !p->log || !p->lock || !p->run || !p->url) {
        paths_free(p);
        sl_seterr(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* 1 if the data directory holds a cluster, 0 if not, -1 if it cannot be told. */
static int is_initialised(const sl_pg_paths *p, char *err, size_t errlen)
{
    char *ver = xasprintf("%s/PG_VERSION", p->data);
    struct stat st;
    int r = ver && stat(ver, &st) == 0 ? 1 : 0;
    if (!r && ver && errno != ENOENT && errno != ENOTDIR) {
        sl_seterr(err, errlen, "cannot read %s: %s", ver, strerror(errno));
        r = -1;
    }
    free(ver);
    return r;
}

/* The postmaster's pid from postmaster.pid, 0 if none. */
static long read_pid(const sl_pg_paths *p)
{
    char *path = xasprintf("%s/postmaster.pid", p->data);
    char *text = path ? sl_read_file(path, NULL) : NULL;
    long pid = text ? strtol(text, NULL, 10) : 0;
    free(text);
    free(path);
    return pid > 0 ? pid : 0;
}

/* ================================================================ the server user */

typedef struct sl_pg_owner {
    int drop; /* running as root: children switch to the user below */
    uid_t uid;
    gid_t gid;
    char name[64];
    gid_t groups[SL_PG_MAX_GROUPS];
    int ngroups;
} sl_pg_owner;

static int owner_init(sl_pg_owner *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->uid = geteuid();
    o->gid = getegid();
    if (o->uid != 0) {
        struct passwd pw, *res = NULL;
        char buf[4096];
        if (getpwuid_r(o->uid, &pw, buf, sizeof buf, &res) == 0 && res)
            snprintf(o->name, sizeof o->name, "%s", pw.pw_name);
        else
            snprintf(o->name, sizeof o->name, "uid %ld", (long)o->uid);
        return 0;
    }
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwnam_r(SL_PG_OS_USER, &pw, buf, sizeof buf, &res) != 0 || !res) {
        sl_seterr(err, errlen,
                  "as root the embedded database runs as the `" SL_PG_OS_USER
                  "` system user (Postgres refuses root), and there is no such user: install "
                  "the server with `apt-get install postgresql`, or set DATABASE_URL");
        return -1;
    }
    if (pw.pw_uid == 0) {
        sl_seterr(err, errlen,
                  "the `" SL_PG_OS_USER "` system user has uid 0; Postgres refuses "
                  "to run as root");
        return -1;
    }
    o->drop = 1;
    o->uid = pw.pw_uid;
    o->gid = pw.pw_gid;
    snprintf(o->name, sizeof o->name, "%s", pw.pw_name);
    o->ngroups = SL_PG_MAX_GROUPS;
    if (getgrouplist(o->name, o->gid, o->groups, &o->ngroups) < 0) {
        o->groups[0] = o->gid;
        o->ngroups = 1;
    }
    return 0;
}

/* In a forked child: become the server user. Only system calls. */
static int drop_privileges(const sl_pg_owner *o)
{
    if (!o->drop) return 0;
    if (setgroups((size_t)o->ngroups, o->groups) < 0 || setgid(o->gid) < 0 || setuid(o->uid) < 0)
        return -1;
    if (getuid() != o->uid || geteuid() != o->uid || setuid(0) == 0) return -1;
    return 0;
}

/* In a forked child: report on stderr and exit 127. */
static void child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void child_fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
    _exit(127);
}

/* Appends n bytes to the tail buffer out (capacity cap, NUL-terminated), keeping
 * only the most recent output when it overflows. */
static void tail_append(char *out, size_t cap, size_t *len, const char *data, size_t n)
{
    if (cap == 0) return;
    if (n >= cap - 1) {
        data += n - (cap - 1);
        n = cap - 1;
    }
    if (*len + n > cap - 1) {
        size_t drop = *len + n - (cap - 1);
        memmove(out, out + drop, *len - drop);
        *len -= drop;
    }
    memcpy(out + *len, data, n);
    *len += n;
    out[*len] = '\0';
}

/* Runs argv (argv[0] a full path) as the server user in directory cwd, stdin from
 * /dev/null, stdout and stderr captured (the last bytes) into out. Returns the exit
 * status, 128 + signal if killed, or -1 if it could not be started (reason in out). */
static int run_child(const sl_pg_owner *o, const char *cwd, char *const argv[], char *out,
                     size_t outlen)
{
    size_t len = 0;
    int fds[2];
    if (outlen) out[0] = '\0';
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(out, outlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(out, outlen, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0) _exit(127);
        if (nul > 2) close(nul);
        signal(SIGPIPE, SIG_DFL);
        umask(077);
        if (drop_privileges(o) < 0)
            child_fail("cannot switch to the %s user: %s", o->name, strerror(errno));
        if (cwd && chdir(cwd) < 0)
            child_fail("cannot enter %s as %s: %s", cwd, o->name, strerror(errno));
        execv(argv[0], argv);
        child_fail("cannot run %s: %s", argv[0], strerror(errno));
    }
    close(fds[1]);
    char buf[4096];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        tail_append(out, outlen, &len, buf, (size_t)n);
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(out, outlen, "waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* As root: checks, as the server user, that every directory from / down to dir
 * can be entered. Returns 0, or -1 with a message naming the first one that cannot. */
static int check_traversal(const sl_pg_owner *o, const char *dir, char *err, size_t errlen)
{
    if (!o->drop) return 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        sl_seterr(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    size_t n = strlen(dir);
    char *copy = malloc(n + 1);
    if (!copy) {
        close(fds[0]);
        close(fds[1]);
        sl_seterr(err, errlen, "out of memory");
        return -1;
    }
    memcpy(copy, dir, n + 1);
    pid_t pid = fork();
    if (pid < 0) {
        sl_seterr(err, errlen, "fork: %s", strerror(errno));
        free(copy);
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        if (drop_privileges(o) < 0) _exit(2);
        for (char *c = copy + 1;; c++) {
            if (*c == '/' || *c == '\0') {
                char saved = *c;
                *c = '\0';
                if (access(copy, X_OK) < 0) {
                    ssize_t w = write(fds[1], copy, strlen(copy));
                    (void)w;
                    _exit(1);
                }
                *c = saved;
                if (!saved) break;
            }
        }
        _exit(0);
    }
    close(fds[1]);
    char blocked[4096];
    size_t len = 0;
    blocked[0] = '\0';
    for (;;) {
        ssize_t r = read(fds[0], blocked + len, sizeof blocked - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        if (len >= sizeof blocked - 1) break;
    }
    blocked[len] = '\0';
    close(fds[0]);
    free(copy);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 1)
        sl_seterr(err, errlen,
                  "as root the embedded database runs as the `%s` user, who cannot enter %s "
                  "(on the way to %s): let it through (e.g. `chmod o+x %s`), or choose another "
                  "state directory with --home or SLUICE_HOME",
                  o->name, blocked, dir, blocked);
    else
        sl_seterr(err, errlen, "cannot switch to the %s user to check access to %s", o->name, dir);
    return -1;
}

/* ================================================================ directories */

/* mkdir -p: missing parents get 0755, the last component `mode` (exactly, despite
 * the umask); an existing last component is left as it is. */
static int mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
    char *copy = strdup(path);
    if (!copy) {
        sl_seterr(err, errlen, "out of memory");
        return -1;
    }
    for (char *c = copy + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
            sl_seterr(err, errlen, "cannot create %s: %s", copy, strerror(errno));
            free(copy);
            return -1;
        }
        *c = '/';
    }
    free(copy);
    if (mkdir(path, mode) == 0) {
        if (chmod(path, mode) < 0) {
            sl_seterr(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    struct stat st;
    if (errno != EEXIST || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        sl_seterr(err, errlen, "cannot create the directory %s: %s", path,
                  errno == EEXIST ? "a file is in the way" : strerror(errno));
        return -1;
    }
    return 0;
}

/* Makes dir a directory owned by the server user with mode 0700: creates it (and,
 * as root, hands it over), or checks an existing one — it must not be a symlink and
 * must belong to the server user; stray group/other bits are removed. */
static int private_dir(const sl_pg_owner *o, const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) == 0) {
        if (o->drop && lchown(dir, o->uid, o->gid) < 0) {
            sl_seterr(err, errlen, "cannot hand %s to the %s user: %s", dir, o->name,
                      strerror(errno));
            return -1;
        }
        return 0;
    }
    if (errno != EEXIST) {
        sl_seterr(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(dir, &st) < 0) {
        sl_seterr(err, errlen, "cannot stat %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        sl_seterr(err, errlen, "%s exists and is not a directory: remove it", dir);
        return -1;
    }
    if (st.st_uid != o->uid) {
        sl_seterr(err, errlen,
                  "%s belongs to uid %ld, but the embedded database runs as %s (uid %ld): "
                  "remove it, or give it to that user (`chown -R %s %s`)",
                  dir, (long)st.st_uid, o->name, (long)o->uid, o->name, dir);
        return -1;
    }
    if ((st.st_mode & 077) && chmod(dir, 0700) < 0) {
        sl_seterr(err, errlen, "cannot chmod 0700 %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf of a leftover directory (an interrupted initdb's). */
static int remove_tree(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(dir, &st) < 0 && errno == ENOENT) return 0;
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0) {
        sl_seterr(err, errlen, "cannot remove the leftover %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Takes the exclusive flock on path, waiting (bounded) for another holder. Returns
 * the descriptor (close it to release), or -1. */
static int take_lock(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        sl_seterr(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    for (long waited = 0;; waited += 100) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            sl_seterr(err, errlen, "cannot lock %s: %s", path, strerror(errno));
            break;
        }
        if (waited >= SL_PG_LOCK_TIMEOUT_MS) {
            sl_seterr(err, errlen,
                      "timed out waiting for %s: another sluice is initialising or starting the "
                      "embedded database and has not finished",
                      path);
            break;
        }
        sleep_ms(100);
    }
    close(fd);
    return -1;
}

/* ================================================================ server programs */

static int executable(const char *dir, const char *name)
{
    char *path = xasprintf("%s/%s", dir, name);
    int ok = path && access(path, X_OK) == 0;
    free(path);
    return ok;
}

static int has_server(const char *dir)
{
    return executable(dir, "initdb") && executable(dir, "pg_ctl");
}

/* Directory holding initdb and pg_ctl: $SLUICE_PG_BIN, else the newest
 * /usr/lib/postgresql/<version>/bin, else the first PATH entry with both. Returns a
 * malloc'd path, or NULL with the "install postgresql" message in err. */
static char *find_server_bin(char *err, size_t errlen)
{
    const char *env = getenv("SLUICE_PG_BIN");
    if (env && *env) {
        if (has_server(env)) {
            char *bin = strdup(env);
            if (!bin) sl_seterr(err, errlen, "out of memory");
            return bin;
        }
        sl_seterr(err, errlen, "%s (SLUICE_PG_BIN=%s has no initdb and pg_ctl)", sl_pg_missing,
                  env);
        return NULL;
    }
    char *best = NULL;
    long best_major = -1, best_minor = -1;
    DIR *d = opendir("/usr/lib/postgresql");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            long major = 0, minor = 0;
            char *end;
            if (!isdigit((unsigned char)e->d_name[0])) continue;
            major = strtol(e->d_name, &end, 10);
            if (*end == '.') minor = strtol(end + 1, &end, 10);
            if (*end) continue;
            if (major < best_major || (major == best_major && minor <= best_minor)) continue;
            char *bin = xasprintf("/usr/lib/postgresql/%s/bin", e->d_name);
            if (bin && has_server(bin)) {
                free(best);
                best = bin;
                best_major = major;
                best_minor = minor;
            } else {
                free(bin);
            }
        }
        closedir(d);
    }
    if (best) return best;
    const char *path = getenv("PATH");
    if (path) {
        char *copy = strdup(path), *save = NULL;
        int oom = !copy;
        for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir;
             dir = strtok_r(NULL, ":", &save)) {
            if (*dir && has_server(dir)) {
                best = strdup(dir);
                oom = !best;
                break;
            }
        }
        free(copy);
        if (best) return best;
        if (oom) {
            sl_seterr(err, errlen, "out of memory");
            return NULL;
        }
    }
    sl_seterr(err, errlen, "%s", sl_pg_missing);
    return NULL;
}

/* Size of the server log (0 if none): where the next start's output begins. */
static long log_size(const sl_pg_paths *p)
{
    struct stat st;
    return stat(p->log, &st) == 0 ? (long)st.st_size : 0;
}

/* The most telling line (FATAL etc.) the server logged after offset `from`, or "". */
static void log_error_line(const sl_pg_paths *p, long from, char *dst, size_t dstlen)
{
    dst[0] = '\0';
    FILE *f = fopen(p->log, "re");
    if (!f) return;
    char tail[8192];
    long start = log_size(p) - (long)(sizeof tail - 1);
    if (start < from) start = from;
    if (start < 0) start = 0;
    size_t n = fseek(f, start, SEEK_SET) == 0 ? fread(tail, 1, sizeof tail - 1, f) : 0;
    fclose(f);
    tail[n] = '\0';
    /* Only lines that report trouble count here. */
    if (!strstr(tail, "FATAL:") && !strstr(tail, "PANIC:") && !strstr(tail, "ERROR:")) return;
    pick_error_line(tail, dst, dstlen);
}

/* ================================================================ initdb, conf, start */

/* The settings sluice adds to postgresql.conf. */
static int append_settings(const char *datadir, const char *run, char *err, size_t errlen)
{
    char *conf = xasprintf("%s/postgresql.conf", datadir);
    FILE *f = conf ? fopen(conf, "ae") : NULL;
    if (!f) {
        sl_seterr(err, errlen, "cannot open %s: %s", conf ? conf : "postgresql.conf",
                  strerror(errno));
        free(conf);
        return -1;
    }
    fprintf(f,
            "\n"
            "# ---- added by sluice for its embedded cluster ----\n"
            "listen_addresses = ''\t\t\t# unix socket only: no TCP port\n"
            "port = " SL_PG_PORT "\t\t\t\t# names the socket file (.s.PGSQL." SL_PG_PORT ")\n"
            "unix_socket_directories = '%s'\n"
            "unix_socket_permissions = 0700\t\t# local auth is trust: owner only\n"
            "max_connections = 200\n"
            "shared_buffers = 128MB\n",
            run);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        sl_seterr(err, errlen, "cannot write %s", conf);
        free(conf);
        return -1;
    }
    free(conf);
    return 0;
}

/* If the state directory moved since initdb, the socket directory recorded in
 * postgresql.conf is stale: append the current one (the last setting wins). */
static int update_socket_setting(const sl_pg_paths *p, char *err, size_t errlen)
{
    char *conf = xasprintf("%s/postgresql.conf", p->data);
    char *text = conf ? sl_read_file(conf, NULL) : NULL;
    if (!text) {
        sl_seterr(err, errlen, "cannot read %s/postgresql.conf", p->data);
        free(conf);
        return -1;
    }
    static const char key[] = "unix_socket_directories";
    char current[4096] = "";
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (strncmp(s, key, sizeof key - 1) == 0) {
            s += sizeof key - 1;
            while (isspace((unsigned char)*s))
                s++;
            if (*s == '=') s++;
            while (isspace((unsigned char)*s))
                s++;
            if (*s == '\'') {
                char *q = strchr(s + 1, '\'');
                if (q) snprintf(current, sizeof current, "%.*s", (int)(q - s - 1), s + 1);
            }
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
    int rc = 0;
    if (strcmp(current, p->run) != 0) {
        FILE *f = fopen(conf, "ae");
        if (!f || fprintf(f, "unix_socket_directories = '%s'\t# the state directory moved\n",
                          p->run) < 0) {
            sl_seterr(err, errlen, "cannot update %s: %s", conf, strerror(errno));
            rc = -1;
        }
        if (f && fclose(f) != 0 && rc == 0) {
            sl_seterr(err, errlen, "cannot update %s", conf);
            rc = -1;
        }
    }
    free(conf);
    return rc;
}

/* initdb into data.init, add the settings, rename to data. */
static int run_initdb(const sl_pg_paths *p, const sl_pg_owner *o, const char *bin, char *err,
                      size_t errlen)
{
    if (remove_tree(p->data_init, err, errlen) < 0) return -1;
    char *initdb = xasprintf("%s/initdb", bin);
    if (!initdb) {
        sl_seterr(err, errlen, "out of memory");
        return -1;
    }
    char *argv[] = {initdb,
                    "-D",
                    p->data_init,
                    "-U",
                    SL_PG_SUPERUSER,
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=reject",
                    NULL};
    char out[SL_PG_OUT_MAX], line[1024];
    int rc = run_child(o, p->pgdir, argv, out, sizeof out);
    free(initdb);
    if (rc != 0) {
        pick_error_line(out, line, sizeof line);
        sl_seterr(err, errlen, "initdb failed: %s", line);
        remove_tree(p->data_init, NULL, 0);
        return -1;
    }
    if (append_settings(p->data_init, p->run, err, errlen) < 0) return -1;
    if (rename(p->data_init, p->data) < 0) {
        sl_seterr(err, errlen, "cannot rename %s to %s: %s", p->data_init, p->data,
                  strerror(errno));
        return -1;
    }
    return 0;
}

static PGPing ping_server(const sl_pg_paths *p)
{
    const char *const keys[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
    const char *const vals[] = {p->run, SL_PG_PORT, SL_PG_SUPERUSER, "postgres", "10", NULL};
    return PQpingParams(keys, vals, 0);
}

static PGconn *connect_to(const sl_pg_paths *p, const char *dbname)
{
    const char *const keys[] = {
        "host", "port", "user", "dbname", "connect_timeout", "application_name", NULL};
    const char *const vals[] = {p->run, SL_PG_PORT, SL_PG_SUPERUSER, dbname, "10", "sluice", NULL};
    return PQconnectdbParams(keys, vals, 0);
}

/* The first line of a libpq error message. */
static void pq_message(PGconn *c, char *dst, size_t dstlen)
{
    snprintf(dst, dstlen, "%s", c ? PQerrorMessage(c) : "out of memory");
    char *nl = strchr(dst, '\n');
    if (nl) *nl = '\0';
    rstrip(dst);
}

/* Creates the `sluice` database if it is missing. */
static int ensure_database(const sl_pg_paths *p, char *err, size_t errlen)
{
    char msg[512];
    PGconn *c = connect_to(p, "postgres");
    if (!c || PQstatus(c) != CONNECTION_OK) {
        pq_message(c, msg, sizeof msg);
        sl_seterr(err, errlen, "cannot connect to the embedded database: %s", msg);
        PQfinish(c);
        return -1;
    }
    int rc = 0;
    PGresult *r = PQexec(c, "SELECT 1 FROM pg_database WHERE datname = '" SL_PG_DBNAME "'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = -1;
    } else if (PQntuples(r) == 0) {
        PQclear(r);
        r = PQexec(c, "CREATE DATABASE " SL_PG_DBNAME);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = -1;
    }
    if (rc < 0) {
        pq_message(c, msg, sizeof msg);
        sl_seterr(err, errlen, "cannot create the database " SL_PG_DBNAME ": %s", msg);
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* pg_ctl start, retried while a killed server's lock file or shared memory lingers
 * (its processes take a moment to go away). */
static int start_server(const sl_pg_paths *p, const sl_pg_owner *o, const char *bin, char *err,
                        size_t errlen)
{
    struct stat st;
    if (stat(p->data, &st) < 0) {
        sl_seterr(err, errlen, "cannot stat %s: %s", p->data, strerror(errno));
        return -1;
    }
    if (st.st_uid != o->uid) {
        sl_seterr(err, errlen,
                  "%s belongs to uid %ld, but the server runs as %s (uid %ld): `chown -R %s %s`",
                  p->data, (long)st.st_uid, o->name, (long)o->uid, o->name, p->data);
        return -1;
    }
    char *pg_ctl = xasprintf("%s/pg_ctl", bin);
    if (!pg_ctl) {
        sl_seterr(err, errlen, "out of memory");
        return -1;
    }
    char *argv[] = {pg_ctl, "-D", p->data,           "-l",    p->log,
                    "-w",   "-t", SL_PG_CTL_TIMEOUT, "start", NULL};
    char out[SL_PG_OUT_MAX], line[1024] = "";
    int rc = -1;
    for (int attempt = 1; attempt <= SL_PG_START_ATTEMPTS; attempt++) {
        long from = log_size(p);
        rc = run_child(o, p->pgdir, argv, out, sizeof out);
        if (rc == 0) break;
        log_error_line(p, from, line, sizeof line);
        int lingering = strstr(line, "lock file") || strstr(line, "pre-existing shared memory");
        if (!lingering || attempt == SL_PG_START_ATTEMPTS) break;
        sleep_ms(1000);
    }
    free(pg_ctl);
    if (rc != 0) {
        if (!line[0]) pick_error_line(out, line, sizeof line);
        sl_seterr(err, errlen, "could not start the embedded database: %s (see %s)", line, p->log);
        return -1;
    }
    return 0;
}

/* ================================================================ public API */

char *sl_embedded_url(const sl_config *cfg, char *err, size_t errlen)
{
    sl_pg_paths p;
    if (paths_init(cfg, &p, err, errlen) < 0) return NULL;
    char *url = p.url;
    p.url = NULL;
    paths_free(&p);
    return url;
}

/* Quick check for the common case: the cluster is up and `sluice` exists. */
static int already_running(const sl_pg_paths *p)
{
    if (is_initialised(p, NULL, 0) != 1) return 0;
    PGconn *c = connect_to(p, SL_PG_DBNAME);
    int ok = c && PQstatus(c) == CONNECTION_OK;
    PQfinish(c);
    return ok;
}

/* The server user can reach the home; <home>/pg and the socket directory exist,
 * belong to it and are 0700. */
static int prepare_dirs(const sl_pg_paths *p, const sl_pg_owner *o, char *err, size_t errlen)
{
    if (check_traversal(o, p->home, err, errlen) < 0 || private_dir(o, p->pgdir, err, errlen) < 0 ||
        private_dir(o, p->run, err, errlen) < 0)
        return -1;
    return 0;
}

/* The steps under the lock: initdb if needed, start if not answering, create the
 * database. */
static int start_locked(sl_pg_paths *p, const sl_pg_owner *o, int *actions, char *err,
                        size_t errlen)
{
    char *bin = NULL;
    int rc = -1;
    int init = is_initialised(p, err, errlen);
    if (init < 0) goto out;
    if (!init) {
        if (!(bin = find_server_bin(err, errlen)) || prepare_dirs(p, o, err, errlen) < 0 ||
            run_initdb(p, o, bin, err, errlen) < 0)
            goto out;
        *actions |= SL_EMBEDDED_INITDB;
    }
    PGPing ping = ping_server(p);
    /* Starting up or shutting down (by hand, outside the lock): wait for it to settle. */
    for (int waited = 0; ping == PQPING_REJECT && waited < 60000; waited += 200) {
        sleep_ms(200);
        ping = ping_server(p);
    }
    if (ping == PQPING_REJECT) {
        sl_seterr(err, errlen, "the embedded database does not accept connections (see %s)",
                  p->log);
        goto out;
    }
    if (ping != PQPING_OK) {
        if (!bin && !(bin = find_server_bin(err, errlen))) goto out;
        if ((!(*actions & SL_EMBEDDED_INITDB) && prepare_dirs(p, o, err, errlen) < 0) ||
            update_socket_setting(p, err, errlen) < 0 || start_server(p, o, bin, err, errlen) < 0)
            goto out;
        *actions |= SL_EMBEDDED_STARTED;
    }
    rc = ensure_database(p, err, errlen);
out:
    free(bin);
    return rc;
}

char *sl_embedded_start(const sl_config *cfg, int *actions, char *err, size_t errlen)
{
    sl_pg_paths p;
    sl_pg_owner o;
    int dummy = 0;
    if (!actions) actions = &dummy;
    *actions = 0;
    if (paths_init(cfg, &p, err, errlen) < 0) return NULL;
    if (already_running(&p)) {
        char *url = p.url;
        p.url = NULL;
        paths_free(&p);
        return url;
    }
    char *url = NULL;
    int lock = -1;
    if (owner_init(&o, err, errlen) < 0 || mkdir_p(p.home, o.drop ? 0711 : 0700, err, errlen) < 0 ||
        (lock = take_lock(p.lock, err, errlen)) < 0)
        goto out;
    if (start_locked(&p, &o, actions, err, errlen) == 0) {
        url = p.url;
        p.url = NULL;
    }
out:
    if (lock >= 0) close(lock);
    paths_free(&p);
    return url;
}

char *sl_embedded_ensure(const sl_config *cfg, char *err, size_t errlen)
{
    int actions = 0;
    char *url = sl_embedded_start(cfg, &actions, err, errlen);
    if (url && (actions & SL_EMBEDDED_INITDB))
        sl_log(SL_INFO, "initialised the embedded database", "home", cfg->home, NULL);
    if (url && (actions & SL_EMBEDDED_STARTED))
        sl_log(SL_INFO, "started the embedded database", "home", cfg->home, NULL);
    return url;
}

int sl_embedded_stop(const sl_config *cfg, char *err, size_t errlen)
{
    sl_pg_paths p;
    sl_pg_owner o;
    if (paths_init(cfg, &p, err, errlen) < 0) return -1;
    int rc = is_initialised(&p, err, errlen);
    int lock = -1;
    char *bin = NULL, *pg_ctl = NULL;
    if (rc <= 0) goto out;
    rc = -1;
    if (owner_init(&o, err, errlen) < 0 || (lock = take_lock(p.lock, err, errlen)) < 0) goto out;
    if (ping_server(&p) == PQPING_NO_RESPONSE) {
        long pid = read_pid(&p);
        if (pid > 0 && kill((pid_t)pid, 0) == 0) {
            sl_seterr(err, errlen,
                      "process %ld holds %s/postmaster.pid but the server does not answer on %s; "
                      "not stopping it",
                      pid, p.data, p.run);
            goto out;
        }
        rc = 0;
        goto out;
    }
    if (!(bin = find_server_bin(err, errlen)) || !(pg_ctl = xasprintf("%s/pg_ctl", bin))) goto out;
    char *argv[] = {pg_ctl, "-D", p.data, "-m", "fast", "-w", "-t", SL_PG_CTL_TIMEOUT,
                    "stop", NULL};
    char out[SL_PG_OUT_MAX], line[1024];
    if (run_child(&o, p.pgdir, argv, out, sizeof out) != 0) {
        pick_error_line(out, line, sizeof line);
        sl_seterr(err, errlen, "could not stop the embedded database: %s", line);
        goto out;
    }
    /* The server removed its socket; a /tmp socket directory would linger. */
    if (p.run_in_tmp) rmdir(p.run);
    rc = 1;
out:
    if (lock >= 0) close(lock);
    free(pg_ctl);
    free(bin);
    paths_free(&p);
    return rc;
}

int sl_embedded_describe(const sl_config *cfg, sl_embedded_info *info, char *err, size_t errlen)
{
    sl_pg_paths p;
    memset(info, 0, sizeof *info);
    if (paths_init(cfg, &p, err, errlen) < 0) return -1;
    int init = is_initialised(&p, err, errlen);
    if (init < 0) {
        paths_free(&p);
        return -1;
    }
    info->initialised = init;
    info->data_dir = p.data;
    info->socket_dir = p.run;
    info->log_file = p.log;
    info->url = p.url;
    p.data = p.run = p.log = p.url = NULL;
    if (init) {
        sl_pg_paths q = {.run = info->socket_dir, .data = info->data_dir};
        info->pid = read_pid(&q);
        PGPing ping = ping_server(&q);
        info->running = ping == PQPING_OK || ping == PQPING_REJECT;
        info->accepting = ping == PQPING_OK;
        PGconn *c = info->accepting ? connect_to(&q, "postgres") : NULL;
        PGresult *r = c && PQstatus(c) == CONNECTION_OK ? PQexec(c, "SHOW server_version") : NULL;
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            snprintf(info->version, sizeof info->version, "%s", PQgetvalue(r, 0, 0));
        } else {
            char *path = xasprintf("%s/PG_VERSION", info->data_dir);
            char *text = path ? sl_read_file(path, NULL) : NULL;
            if (text) {
                rstrip(text);
                snprintf(info->version, sizeof info->version, "%s", text);
            }
            free(text);
            free(path);
        }
        PQclear(r);
        PQfinish(c);
    }
    paths_free(&p);
    return 0;
}

void sl_embedded_info_free(sl_embedded_info *info)
{
    free(info->data_dir);
    free(info->socket_dir);
    free(info->log_file);
    free(info->url);
    memset(info, 0, sizeof *info);
}

int sl_embedded_status(const sl_config *cfg, char *info, size_t infolen)
{
    sl_embedded_info in;
    if (sl_embedded_describe(cfg, &in, info, infolen) < 0) return -1;
    int rc = in.running;
    if (!in.initialised)
        sl_seterr(info, infolen, "not initialised");
    else if (in.accepting)
        sl_seterr(info, infolen, "running (pid %ld)", in.pid);
    else if (in.running)
        sl_seterr(info, infolen, "running (pid %ld), not accepting connections yet", in.pid);
    else
        sl_seterr(info, infolen, "stopped");
    sl_embedded_info_free(&in);
    return rc;
}
