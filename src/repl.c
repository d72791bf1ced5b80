/*
 * repl.c — `sluice repl`: Lua at a prompt, on the same event loop as everything
 * else, with the whole sluice API and helpers to run, queue and inspect jobs.
 *
 *   stdin ev_io ─→ rl_callback_read_char ─→ on_line: a complete chunk?
 *        ▲                                     │ no: ">>" and read more
 *        │                                     ▼ yes
 *   prompt again ◄── on_done ◄── the chunk runs as a task (sl_repl_eval)
 *
 * The prompt never blocks the loop: libedit's callback interface reads one key at
 * a time when stdin is readable, so timers, queries and runs go on while it waits.
 * While a chunk runs there is no prompt (and stdin is left alone); Ctrl-C cancels
 * the chunk — and with it any run it is waiting for, which is recorded as failed —
 * rather than the REPL. At the prompt Ctrl-C clears the line; Ctrl-D exits.
 *
 * `sluice repl -e CODE` and a non-terminal stdin run one chunk without prompts.
 *
 * The process registers as a worker of kind 'repl' at start, so runs started with
 * run() hold leases renewed by a heartbeat (lua_repl.c). On exit, runs still in
 * flight are ended and recorded, and the worker is marked stopped.
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "log.h"
#include "pg.h"
#include "queue.h"
#include "repl.h"
#include "runtime.h"

#include <editline/readline.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <locale.h>
#include <lua.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROMPT "> "
#define PROMPT_MORE ">> "
#define HISTORY_LINES 1000
#define DRAIN_SECONDS 15.0

/* Characters that end a word for completion: '.', ':' and '_' do not, so
 * `sluice.db.q` is one word; quotes do, so a job type inside "…" is one. */
#define WORD_BREAKS " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]})"

typedef struct repl {
    sl_ctx ctx;
    const sl_config *cfg;
    char worker[40];
    int interactive;
    int prompting;   /* a libedit line handler is installed */
    int evaluating;  /* a chunk is running */
    int failed;      /* how the last chunk ended */
    int interrupted; /* the signal that interrupted the input (SIGINT, SIGTERM, SIGHUP), or 0 */
    int quitting;
    int stopping_worker;
    int drain_expired;
    sl_buf input;  /* the lines of an unfinished chunk */
    char *history; /* <home>/repl_history, or NULL */
    char word_breaks[sizeof WORD_BREAKS];
    ev_io in;
    ev_signal sigint, sigterm, sighup, sigwinch, sigcont;
    ev_timer drain;
} repl;

/* libedit's callback interface gives the line and completion handlers no user
 * data: this one pointer to the REPL's context is the only static state, set
 * while the interactive prompt runs. */
static repl *active_repl;

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice repl [-e CODE]\n\n"
                 "Lua with the sluice API and job helpers (help() lists them), on the same\n"
                 "event loop as the daemon. An expression or =expr prints its value.\n"
                 "  -e CODE   run CODE, print its value, exit (1 on error)\n"
                 "With stdin not a terminal, the whole of stdin is run as one chunk.\n"
                 "History is kept in <state dir>/repl_history.\n"
                 "SIGINT (Ctrl-C) cancels the input running; SIGTERM and SIGHUP end the\n"
                 "REPL. A signal ignored when sluice started (SIGHUP under nohup) stays\n"
                 "ignored.\n");
}

/* ------------------------------------------------------------------ the prompt */

static void on_line(char *line);

static void prompt(repl *r, int more)
{
    if (r->quitting) return;
    sl_cli_flush_stdout();
    fflush(stderr);
    rl_callback_handler_install(more ? PROMPT_MORE : PROMPT, on_line);
    r->prompting = 1;
    ev_io_start(r->ctx.loop, &r->in);
}

static void stop_prompt(repl *r)
{
    if (r->prompting) rl_callback_handler_remove(); /* the terminal back in its normal mode */
    r->prompting = 0;
    ev_io_stop(r->ctx.loop, &r->in);
}

static void quit(repl *r)
{
    r->quitting = 1;
    if (r->interactive) stop_prompt(r);
    if (r->evaluating) sl_repl_interrupt(r->ctx.rt, "the REPL exited"); /* on_done runs */
    ev_break(r->ctx.loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------------ evaluation */

static void on_done(int failed, const char *message, void *data)
{
    repl *r = data;
    r->evaluating = 0;
    r->failed = failed;
    if (failed && message) {
        if (r->interactive)
            fprintf(stderr, "%s\n", message);
        else
            sl_cli_error("%s", message);
    }
    sl_cli_flush_stdout();
    fflush(stderr);
    if (r->quitting || !r->interactive)
        ev_break(r->ctx.loop, EVBREAK_ALL);
    else
        prompt(r, 0);
}

/* Evaluates r->input: returns SL_REPL_* (with SL_REPL_ERROR the message is out). */
static int evaluate(repl *r, const char *chunkname)
{
    char err[4096];
    int rc = sl_repl_eval(r->ctx.rt, sl_buf_str(&r->input), r->input.len, chunkname, on_done, r,
                          err, sizeof err);
    if (rc == SL_REPL_STARTED) {
        r->evaluating = 1;
        r->interrupted = 0;
    } else if (rc == SL_REPL_ERROR || !r->interactive) {
        if (r->interactive)
            fprintf(stderr, "%s\n", err);
        else
            sl_cli_error("%s", err);
        rc = SL_REPL_ERROR;
    }
    return rc;
}

static int blank(const sl_buf *b)
{
    const char *s = sl_buf_str(b);
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* libedit hands over a finished line (malloc'd), or NULL for Ctrl-D on an empty
 * line. */
static void on_line(char *line)
{
    repl *r = active_repl;
    stop_prompt(r);
    if (!line) {
        if (r->input.len == 0) {
            fputs("\n", stdout);
            quit(r);
            return;
        }
        /* Ctrl-D inside an unfinished chunk: say why it cannot run (Lua's
         * "… expected near <eof>") and drop it */
        fputs("\n", stdout);
        char err[4096];
        int rc = sl_repl_eval(r->ctx.rt, sl_buf_str(&r->input), r->input.len, "=stdin", on_done, r,
                              err, sizeof err);
        sl_buf_reset(&r->input);
        if (rc == SL_REPL_STARTED) { /* not reached: the chunk was unfinished */
            r->evaluating = 1;
            return;
        }
        fprintf(stderr, "%s\n", err);
        prompt(r, 0);
        return;
    }
    if (*line) add_history(line);
    if (r->input.len) sl_buf_puts(&r->input, "\n");
    sl_buf_puts(&r->input, line);
    free(line);
    if (blank(&r->input)) {
        sl_buf_reset(&r->input);
        prompt(r, 0);
        return;
    }
    int rc = evaluate(r, "=stdin");
    if (rc == SL_REPL_MORE) {
        prompt(r, 1);
        return;
    }
    sl_buf_reset(&r->input);
    if (rc == SL_REPL_ERROR) prompt(r, 0);
}

/* ------------------------------------------------------------------ completion */

/* libedit's completion hook: the word at the cursor is `text`; the context is the
 * unfinished chunk so far plus the line up to the cursor. */
static char **complete(const char *text, int start, int end)
{
    repl *r = active_repl;
    (void)start;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    sl_buf before = {0};
    if (r->input.len) {
        sl_buf_add(&before, r->input.data, r->input.len);
        sl_buf_puts(&before, "\n");
    }
    size_t n = strlen(rl_line_buffer);
    sl_buf_add(&before, rl_line_buffer, end >= 0 && (size_t)end < n ? (size_t)end : n);
    int append = '\0';
    char **matches = sl_repl_complete(r->ctx.rt, sl_buf_str(&before), text, &append);
    sl_buf_free(&before);
    rl_completion_append_character = append;
    return matches;
}

/* ------------------------------------------------------------------ watchers */

static void stdin_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    repl *r = w->data;
    int avail = 0;
    if (ioctl(w->fd, FIONREAD, &avail) == 0 && avail == 0) {
        /* Readable with nothing to read: the terminal is gone (hung up), or a
         * Ctrl-C flushed what was typed between the poll and this read. */
        struct pollfd p = {.fd = w->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL))) quit(r);
        return;
    }
    rl_callback_read_char();
}

static void sigint_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    repl *r = w->data;
    if (r->evaluating) {
        r->interrupted = SIGINT;
        sl_repl_interrupt(r->ctx.rt, "interrupted");
    } else if (r->interactive && !r->quitting) {
        /* at the prompt: drop the line (and any unfinished chunk) */
        stop_prompt(r);
        sl_buf_reset(&r->input);
        fputs("^C\n", stdout);
        prompt(r, 0);
    } else {
        quit(r);
    }
}

static void sigquit_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    repl *r = w->data;
    r->interrupted = w->signum;
    quit(r);
}

static void sigwinch_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    repl *r = w->data;
    if (r->prompting) rl_resize_terminal();
}

static void sigcont_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    repl *r = w->data;
    if (r->prompting) { /* back from Ctrl-Z: the terminal mode and line again */
        rl_prep_terminal(1);
        rl_forced_update_display();
    }
}

static void signals_start(repl *r)
{
    struct {
        ev_signal *w;
        void (*cb)(struct ev_loop *, ev_signal *, int);
        int sig;
    } s[] = {
        {&r->sigint, sigint_cb, SIGINT},    {&r->sigterm, sigquit_cb, SIGTERM},
        {&r->sighup, sigquit_cb, SIGHUP},   {&r->sigwinch, sigwinch_cb, SIGWINCH},
        {&r->sigcont, sigcont_cb, SIGCONT},
    };
    int n = r->interactive ? 5 : 3;
    for (int i = 0; i < n; i++) /* one ignored at start (nohup's SIGHUP) stays ignored */
        sl_cli_watch_signal(r->ctx.loop, s[i].w, s[i].cb, s[i].sig, r);
}

static void signals_stop(repl *r)
{
    ev_signal *s[] = {&r->sigint, &r->sigterm, &r->sighup, &r->sigwinch, &r->sigcont};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (ev_is_active(s[i])) ev_signal_stop(r->ctx.loop, s[i]);
}

/* ------------------------------------------------------------------ history */

static void history_open(repl *r)
{
    using_history();
    stifle_history(HISTORY_LINES);
    const char *home = r->cfg->home;
    if (!home || !*home) return;
    mkdir(home, 0700); /* the state directory, if this is its first use */
    size_t n = strlen(home) + sizeof "/repl_history";
    r->history = malloc(n);
    if (!r->history) return; /* out of memory: no history this session */
    snprintf(r->history, n, "%s/repl_history", home);
    read_history(r->history); /* none yet is fine */
}

static void history_close(repl *r)
{
    if (r->history) {
        if (write_history(r->history) == 0) chmod(r->history, 0600); /* lines may hold secrets */
        free(r->history);
        r->history = NULL;
    }
    clear_history();
}

/* ------------------------------------------------------------------ modes */

/* libedit reads the terminal through a descriptor of its own that does not
 * block: typed text the loop saw waiting can be discarded by a Ctrl-C before
 * libedit reads it, and a blocking read would then hold the REPL (and the
 * Ctrl-C) until the next key. A read that finds nothing returns without a line.
 * NULL (then libedit reads stdin as it is) if the terminal cannot be reopened. */
static FILE *open_input(void)
{
    const char *tty = ttyname(STDIN_FILENO);
    int fd = tty ? open(tty, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f && fd >= 0) close(fd);
    return f;
}

static void interact(repl *r)
{
    active_repl = r;
    /* the terminal's character set: without it libedit drops every non-ASCII
     * byte typed (only character classification changes; numbers print as
     * before) */
    setlocale(LC_CTYPE, "");
    FILE *in = open_input();
    if (in) rl_instream = in;
    rl_catch_signals = 0; /* signals are the loop's (ev_signal), not libedit's */
    rl_readline_name = "sluice";
    memcpy(r->word_breaks, WORD_BREAKS, sizeof WORD_BREAKS);
    rl_completer_word_break_characters = r->word_breaks;
    rl_basic_word_break_characters = r->word_breaks;
    rl_attempted_completion_function = complete;
    history_open(r);
    printf("sluice %s — %s with the sluice API. help() lists the helpers; Ctrl-D exits.\n",
           SLUICE_VERSION, LUA_RELEASE);
    ev_io_init(&r->in, stdin_cb, STDIN_FILENO, EV_READ);
    r->in.data = r;
    prompt(r, 0);
    ev_run(r->ctx.loop, 0);
    stop_prompt(r);
    history_close(r);
    if (in) {
        rl_instream = stdin;
        fclose(in);
    }
    active_repl = NULL;
}

/* Runs one chunk without prompts; returns the exit status. */
static int run_once(repl *r, const char *code, size_t len, const char *chunkname)
{
    if (len > 1 && code[0] == '#' && code[1] == '!') { /* a #! line: keep the line count */
        size_t skip = strcspn(code, "\n");
        code += skip;
        len -= skip;
    }
    sl_buf_add(&r->input, code, len);
    int rc = evaluate(r, chunkname);
    sl_buf_reset(&r->input);
    if (rc != SL_REPL_STARTED) return 1;
    ev_run(r->ctx.loop, 0);
    if (r->interrupted) return 128 + r->interrupted; /* 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP */
    return r->failed ? 1 : 0;
}

/* ------------------------------------------------------------------ exit */

static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    repl *r = w->data;
    r->drain_expired = 1;
}

static void worker_stopped(PGresult *res, const char *err, void *data)
{
    repl *r = data;
    if (err) sl_log(SL_WARN, "marking the REPL's worker stopped failed", "error", err, NULL);
    if (res) PQclear(res);
    r->stopping_worker = 0;
}

/* Ends what is still in flight and waits (bounded) until it is recorded. */
static void finish(repl *r)
{
    sl_repl_stop_runs(r->ctx.rt, "the REPL exited");
    if (r->ctx.pg && r->worker[0]) {
        const char *p[] = {r->worker};
        r->stopping_worker = 1;
        sl_pg_query(r->ctx.pg, "UPDATE sluice.workers SET stopped_at = now() WHERE id = $1", 1, p,
                    worker_stopped, r);
    }
    ev_timer_init(&r->drain, drain_cb, DRAIN_SECONDS, 0);
    r->drain.data = r;
    ev_timer_start(r->ctx.loop, &r->drain);
    while ((sl_repl_pending(r->ctx.rt) > 0 || r->stopping_worker) && !r->drain_expired)
        ev_run(r->ctx.loop, EVRUN_ONCE);
    ev_timer_stop(r->ctx.loop, &r->drain);
    if (r->drain_expired)
        sl_log(SL_WARN, "gave up waiting for the database to record the REPL's runs", NULL);
}

/* ------------------------------------------------------------------ command */

int sl_cmd_repl(const sl_config *cfg, int argc, char **argv)
{
    const char *code = NULL;
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-e") == 0) {
            if (code) {
                sl_cli_error("repl: -e given twice: give one CODE (separate statements with ;)");
                return 2;
            }
            if (i + 1 >= argc) {
                sl_cli_error("repl: -e needs CODE, e.g. sluice repl -e 'runs{limit = 3}'");
                return 2;
            }
            code = argv[++i];
        } else {
            sl_cli_error("repl: unexpected argument '%s' (see `sluice repl --help`)", argv[i]);
            return 2;
        }
    }
    repl r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.interactive = !code && isatty(STDIN_FILENO);
    if (sl_queue_open(&r.ctx, cfg, SL_ECHO_PLAIN) < 0) return 1;
    r.ctx.trigger_source = "repl";
    sl_queue_connect_early(&r.ctx);
    sl_queue_load(&r.ctx, 0);
    int failed;
    PGconn *c = sl_queue_boot(&r.ctx, "repl", r.worker, &failed);
    if (!c) {
        sl_queue_close(&r.ctx);
        return failed;
    }
    r.ctx.pg = sl_pg_new(r.ctx.loop, r.ctx.db_url, cfg->pool_size);
    sl_pg_reserve(r.ctx.pg); /* handlers cannot hold up lease renewals */
    sl_pg_adopt(r.ctx.pg, c);
    sl_repl_attach(r.ctx.rt, r.worker, cfg->lease_seconds);
    signals_start(&r);

    int status = 0;
    if (code) {
        status = run_once(&r, code, strlen(code), "=(command line)");
    } else if (!r.interactive) {
        size_t len;
        char *src = sl_read_file("-", &len);
        if (src) {
            status = run_once(&r, src, len, "=stdin");
        } else {
            sl_cli_error("cannot read stdin: %s", strerror(errno));
            status = 1;
        }
        free(src);
    } else {
        interact(&r);
    }

    signals_stop(&r);
    finish(&r);
    sl_buf_free(&r.input);
    sl_queue_close(&r.ctx);
    return status;
}
