/*
 * cli_exec.c — `sluice exec FILE.lua [args]`: runs a Lua script as a task with the
 * whole sluice API (sluice.db, sluice.sleep, require of sluice libraries …) in
 * the same sandbox handlers use. `arg` holds the arguments. The exit status is 0,
 * or 1 with the error and traceback on stderr; SIGINT, SIGTERM and SIGHUP cancel
 * the script (its __close handlers run, a transaction is rolled back) and exit
 * 128 + the signal's number.
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "queue.h"
#include "runtime.h"
#include "task.h"

#include <ev.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    struct ev_loop *loop;
    sl_task *chunk; /* the script's task, until done */
    int done, failed;
    int signo; /* the signal that cancelled it, or 0 */
    ev_signal sig[3];
} exec_state;

static void exec_done(int failed, const char *message, void *data)
{
    exec_state *s = data;
    s->done = 1;
    s->failed = failed;
    s->chunk = NULL;
    if (s->signo)
        fprintf(stderr, "sluice: exec: %s: the script was cancelled\n",
                s->signo == SIGINT    ? "interrupted (SIGINT)"
                : s->signo == SIGTERM ? "terminated (SIGTERM)"
                                      : "hung up (SIGHUP)");
    else if (failed)
        fprintf(stderr, "sluice: error: %s\n", message ? message : "failed");
    ev_break(s->loop, EVBREAK_ALL);
}

/* Ctrl-C, a stop or a hung-up terminal: the script is cancelled as a run is,
 * rather than the process killed with its __close handlers never run */
static void exec_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    exec_state *s = w->data;
    if (!s->chunk || s->signo) return;
    s->signo = w->signum;
    sl_task_cancel(s->chunk, "interrupted");
}

static void signals_start(exec_state *s)
{
    static const int which[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++)
        sl_cli_watch_signal(s->loop, &s->sig[i], exec_signal, which[i], s);
}

static void signals_stop(exec_state *s)
{
    for (int i = 0; i < 3; i++)
        if (ev_is_active(&s->sig[i])) ev_signal_stop(s->loop, &s->sig[i]);
}

int sl_cmd_exec(const sl_config *cfg, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: sluice exec FILE.lua [args…]   (FILE - reads the script from stdin)\n"
                "\n"
                "Runs a Lua script as one task with the API handlers have (sluice.db,\n"
                "sluice.http, sluice.sleep, sluice.spawn, require of the shipped libraries …)\n"
                "in the same sandbox, except that it may set globals. arg[1], arg[2], … are\n"
                "the arguments after FILE, arg[0] is FILE; print() writes to stdout. A\n"
                "first line starting with #! is skipped. The job helpers of `sluice repl`\n"
                "(run, queue, …) are not here. It connects to the database (migrating it,\n"
                "as every command does) when the script first uses sluice.db; if it\n"
                "cannot, that call raises (the reason printed before it) and the next\n"
                "call tries again.\n"
                "\n"
                "Exit status: 0 when the script ends, 1 when it raises (the error and its\n"
                "traceback on stderr), 2 when FILE cannot be read or does not compile.\n"
                "SIGINT (Ctrl-C), SIGTERM and SIGHUP cancel the script as a run is\n"
                "cancelled: its pending call stops, its __close handlers run, a\n"
                "transaction it holds is rolled back; the exit status is then 128 + the\n"
                "signal's number (130 for Ctrl-C). A signal ignored when sluice started\n"
                "(SIGHUP under nohup) stays ignored.\n");
        return argc < 2 ? 2 : 0;
    }
    /* FILE "-" is stdin, and named so in messages and tracebacks, as lua and
     * the REPL name it ("stdin:3: …"); arg[0] stays "-", as lua's */
    int from_stdin = strcmp(argv[1], "-") == 0;
    size_t len;
    char *src = sl_read_file(argv[1], &len);
    if (!src) {
        sl_cli_error("cannot read %s: %s", from_stdin ? "stdin" : argv[1], strerror(errno));
        return 2;
    }
    /* skip a #! line */
    if (len > 1 && src[0] == '#' && src[1] == '!') {
        memset(src, ' ', strcspn(src, "\n"));
    }
    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, SL_ECHO_PLAIN) < 0) {
        free(src);
        return 1;
    }
    exec_state st = {.loop = ctx.loop};
    char chunk[4200], err[2048];
    snprintf(chunk, sizeof chunk, "%s%s", from_stdin ? "=" : "@", from_stdin ? "stdin" : argv[1]);
    int status = 1;
    if (sl_runtime_exec(ctx.rt, src, len, chunk, argv[1], (const char *const *)argv + 2, argc - 2,
                        exec_done, &st, &st.chunk, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        status = 2;
    } else {
        signals_start(&st);
        if (!st.done) ev_run(ctx.loop, 0);
        signals_stop(&st);
        status = st.signo ? 128 + st.signo : st.done && !st.failed ? 0 : 1;
    }
    if (status == 1 && ctx.db_refused) status = 2; /* a configuration error (sl_cli_connect) */
    free(src);
    sl_queue_close(&ctx);
    return status;
}
