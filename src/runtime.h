/*
 * runtime.h — the Lua runtime: one lua_State per process, the handler registry,
 * and runs (a job executing as one or more coroutines).
 *
 * Callers (the daemon's worker, `sluice run`, the REPL, `sluice exec`) start a run
 * from a claimed job and get a callback when it has ended, with its outcome:
 *
 *   sl_run *run = sl_run_start(rt, &spec, on_done, data, err, sizeof err);
 *   ...
 *   on_done(run, data): read sl_run_outcome(run), then sl_run_free(run)
 *
 * The runtime never blocks and never lets a handler take the process down: Lua
 * errors, the instruction budget, the memory cap and the wall-clock timeout all
 * end only the run concerned.
 */
#ifndef SL_RUNTIME_H
#define SL_RUNTIME_H

#include <stddef.h>

struct sl_ctx;
struct sl_buf;
struct sl_task;
typedef struct sl_runtime sl_runtime;
typedef struct sl_run sl_run;

enum { SL_RUN_RUNNING = 0, SL_RUN_COMPLETED, SL_RUN_FAILED, SL_RUN_CANCELLED };

/* What a claim returns for one run (strings are copied by sl_run_start). */
typedef struct sl_run_spec {
    const char *run_id;
    const char *job_id;
    const char *job_type;
    const char *brand_id;        /* NULL: platform scope */
    const char *params_json;     /* JSON object */
    const char *checkpoint_json; /* JSON object */
    const char *trigger_source;
    int attempt;
    double timeout_seconds;      /* <= 0: the handler's (or the default) */
    const char *cron_expression; /* recurring jobs: kept for finishing */
    const char *timezone;
} sl_run_spec;

typedef struct sl_run_outcome {
    int status;                /* SL_RUN_COMPLETED / FAILED / CANCELLED */
    const char *result_json;   /* JSON (or NULL) */
    const char *error;         /* NULL unless failed/cancelled */
    const char *logs;          /* logged and not yet recorded, "" if nothing */
    size_t log_from;           /* bytes of the log recorded before `logs` */
    const char *datasets_json; /* explicit dataset reports, JSON object */
    const char *handler_version;
    int retryable;
    double started, finished; /* ev_now() */
} sl_run_outcome;

typedef void (*sl_run_done_fn)(sl_run *run, void *data);

/* How log lines of runs are echoed: structured daemon log lines, or plain lines
 * for a person watching a foreground run. */
enum { SL_ECHO_LOG = 0, SL_ECHO_PLAIN = 1, SL_ECHO_NONE = 2 };

typedef struct sl_runtime_opts {
    size_t memory_limit;     /* bytes for the whole lua_State; 0: 512 MiB */
    long instruction_budget; /* between yields; 0: 100 million */
    int echo;                /* SL_ECHO_* */
} sl_runtime_opts;

/* Creates the Lua state with the sluice modules; the context's loop must exist.
 * NULL with err on failure. */
sl_runtime *sl_runtime_new(struct sl_ctx *ctx, const sl_runtime_opts *opts, char *err,
                           size_t errlen);

/* Cancels every run (without callbacks), closes the state. */
void sl_runtime_free(sl_runtime *rt);

/* Changes the state's caps while it runs (a config reload; 0 leaves one as it
 * is): the memory cap holds from the next allocation, the instruction budget
 * from the next time a run is resumed. Returns the bytes the state uses now. */
size_t sl_runtime_set_caps(sl_runtime *rt, size_t memory_limit, long instruction_budget);

/* Loads (or reloads) every handler from the configured directories, or only the
 * given files. Problems are appended to *problems (malloc'd, one per line, each
 * "file: field: message"); returns the number of problems. On a reload, a file
 * with problems keeps its previous version. */
int sl_runtime_load_handlers(sl_runtime *rt, const char *const *files, int nfiles, char **problems);

/* Whether the last sl_runtime_load_handlers could not read a handler directory
 * (gone or unreadable for a moment, as while a deploy swaps it). The types of
 * its files are then unknown here, so a registry sync must be partial: a full
 * one would mark them unavailable for every client of the database. */
int sl_runtime_dirs_unread(const sl_runtime *rt);

/* The registry as JSON (array of job types with label, emoji, brand rule, param
 * schema, defaults, timeout, retries, datasets, file, version) for syncing into the
 * database. Caller frees. NULL (logged) if it cannot be built. */
char *sl_runtime_registry_json(sl_runtime *rt);

/* Loads the libraries handlers load on first use (sluice.http, retry, spawn), so
 * that a daemon's first runs do not; a failure is logged (they load later). */
void sl_runtime_preload(sl_runtime *rt);

/* Names of loaded job types, sorted, joined by sep (", " for messages).
 * Caller frees. */
char *sl_runtime_type_names(sl_runtime *rt, const char *sep);

/* Checks params for job_type without running anything: returns NULL if fine, else
 * a malloc'd message (unknown type with suggestions, or every parameter problem).
 * On success *normalized (if given) receives the params with defaults applied;
 * then a note is logged when they could not be checked here (the type's file
 * failed to load: the database checks them). flags: SL_VALIDATE_HERE, the job
 * is to run in this process, so a type whose file failed to load is a problem,
 * not a note; SL_VALIDATE_NO_BRAND, no brand is given, which a type that needs
 * one is refused for in the same message as its parameters' problems. */
enum { SL_VALIDATE_HERE = 1, SL_VALIDATE_NO_BRAND = 2 };
char *sl_runtime_validate(sl_runtime *rt, const char *job_type, const char *params_json,
                          char **normalized, unsigned flags);

/* Starts a run; NULL with err if the job type is unknown. */
sl_run *sl_run_start(sl_runtime *rt, const sl_run_spec *spec, sl_run_done_fn done, void *data,
                     char *err, size_t errlen);

/* Ends a run that is still going: its coroutines are cancelled with their pending
 * I/O, and it finishes with status (SL_RUN_FAILED or SL_RUN_CANCELLED) and error.
 * The done callback runs before this returns. */
void sl_run_cancel(sl_run *run, int status, const char *error, int retryable);

const sl_run_outcome *sl_run_outcome_of(const sl_run *run);
const char *sl_run_id(const sl_run *run);
const char *sl_run_job_id(const sl_run *run);
const char *sl_run_job_type(const sl_run *run);
const char *sl_run_cron(const sl_run *run); /* NULL for one-time jobs */
const char *sl_run_timezone(const sl_run *run);
void sl_run_free(sl_run *run);

/* Cancels every run in flight as failed with `why` (retryable); their done
 * callbacks run. */
void sl_runtime_cancel_all_runs(sl_runtime *rt, const char *why);

/* The run in flight with this id, or NULL. */
sl_run *sl_runtime_find_run(sl_runtime *rt, const char *run_id);

/* What a log flush covers for one run: its lines up to byte `upto`. */
typedef struct sl_log_chunk {
    char run_id[40];
    size_t upto;
} sl_log_chunk;

/* Log lines of runs in flight not yet recorded: appends a JSON array of
 * {"run_id", "logs", "from", "upto"} to out, fills chunks (room for
 * sl_runtime_active() entries) and returns how many runs have some. Once
 * recorded, sl_runtime_logs_sent() for each chunk. */
int sl_runtime_pending_logs(sl_runtime *rt, struct sl_buf *out, sl_log_chunk *chunks);
void sl_runtime_logs_sent(sl_runtime *rt, const sl_log_chunk *chunk);

/* Appends the id of each run in flight to out, each followed by a comma
 * ("a,b,"): the elements of a Postgres array literal. */
void sl_runtime_run_ids(const sl_runtime *rt, struct sl_buf *out);

/* Runs that have started and not yet ended. */
int sl_runtime_active(const sl_runtime *rt);

/* Runs a Lua chunk (a script for `sluice exec`, a REPL line) as a task with the
 * sluice API available; done(status 0 ok / 1 error, message) when it ends.
 * *chunk is the task, until done is called (sl_task_cancel stops it). The
 * chunk's `arg` is arg0 (or, NULL, chunkname without its '@' or '=') and
 * args[0..nargs). */
typedef void (*sl_chunk_done_fn)(int failed, const char *message, void *data);
int sl_runtime_exec(sl_runtime *rt, const char *source, size_t len, const char *chunkname,
                    const char *arg0, const char *const *args, int nargs, sl_chunk_done_fn done,
                    void *data, struct sl_task **chunk, char *err, size_t errlen);

#endif
