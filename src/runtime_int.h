/*
 * runtime_int.h — the runtime's internals shared by lua_host.c (the state,
 * modules, registry) and run.c (tasks, runs, the resume function). Nothing
 * outside those two files and the lua_*.c modules includes this.
 */
#ifndef SL_RUNTIME_INT_H
#define SL_RUNTIME_INT_H

#include "runtime.h"
#include "task.h"

#include <ev.h>
#include <lua.h>

/* What one run may record, beside its log (1 MiB, run.c): its result as JSON,
 * and each explicit dataset report. More fails the run (the result) or raises
 * in job.dataset (a report): every outcome of a worker's batch is recorded in
 * one statement, and Postgres refuses a jsonb over 256 MB. */
#define SL_RESULT_MAX (16 << 20)
#define SL_DATASET_REPORT_MAX (1 << 20)
#define SL_SOURCE_MAX (16 << 20) /* bytes of a handler or library file */
#define SL_ERROR_MAX (64 << 10)  /* bytes of a run's error message kept; the rest is cut */

enum { T_NEW, T_READY, T_RUNNING, T_WAITING, T_DONE };

struct sl_task {
    sl_runtime *rt;
    sl_run *run; /* NULL for exec/REPL chunks */
    lua_State *co;
    int ref; /* anchor in the runtime's thread table */
    int state;
    int closing; /* its __close handlers run (close_task, run.c): it is on the C stack */
    int nargs;   /* values already on co's stack for the first resume */
    sl_task_cancel_fn cancel;
    void *op;
    sl_task_prepare_fn prepare;
    void *pdata;
    sl_task *next_ready, *prev_ready;
    sl_task *next_in_run, **pprev_in_run; /* pprev: the pointer to this task */
    long budget;                          /* instructions left until the next yield */
    const char *kill;                     /* set once the task is to die: the error message */
    /* chunks (exec/REPL) */
    sl_chunk_done_fn chunk_done;
    void *chunk_data;
    /* spawn/wait (lua_spawn.c) */
    int result_ref; /* table of results or error, once done */
    int failed;
    sl_task *waiter;   /* task parked in sluice.wait on this one */
    sl_task *parent;   /* the task that spawned this one; NULL for mains and chunks */
    sl_task *children; /* tasks it spawned that still exist (running or uncollected) */
    sl_task *next_sibling, **pprev_sibling;
    sl_task **handle;          /* the Lua handle's pointer to this task: cleared at free */
    struct sl_pg_conn *pinned; /* connection held by sluice.db.transaction */
    /* the first query that failed inside that transaction (lua_db.c): what its
     * COMMIT, answered with ROLLBACK, reports; NULL while none has */
    char *tx_error;
    char tx_sqlstate[6];
};

struct sl_run {
    sl_runtime *rt;
    char *run_id, *job_id, *job_type, *brand_id, *params_json, *checkpoint_json, *trigger;
    char *cron, *tz;
    int attempt;
    double timeout;
    ev_timer timer;
    sl_task *tasks; /* every live task of the run; the first started is main */
    sl_task *main;
    char *logs;
    size_t loglen, logcap;
    size_t logsent;      /* bytes of logs already recorded in the database */
    int log_full;        /* the log reached its cap (noted once) */
    size_t echoed;       /* bytes of its lines written to the daemon log or terminal */
    char *datasets_json; /* {"key": {...}, ...} built as reports come in */
    sl_run_outcome out;
    char *result_json, *error, *version;
    sl_run_done_fn done;
    void *done_data;
    int finished;
    sl_run *next, *prev; /* the runtime's list of active runs */
};

#define SL_BLOCK_CLASSES 16 /* 16-byte classes: blocks of up to 256 bytes */

struct sl_runtime {
    struct sl_ctx *ctx;
    lua_State *L;
    sl_runtime_opts opts;
    size_t mem_used;
    sl_task *current; /* the task being resumed, or NULL */
    sl_task *ready_head, *ready_tail;
    ev_prepare prepare; /* resumes ready tasks before the loop blocks */
    ev_idle idle;       /* more are ready: the loop polls without blocking */
    sl_run *runs;
    int nruns;
    int refs;          /* registry refs held (asserted zero at close) */
    int loading;       /* a handler file loads: its top level is held to the memory cap */
    int hosting;       /* the host runs a handler's code outside its task: the cap holds */
    int load_over_cap; /* the file being loaded was refused memory past the cap */
    /* the request last refused at the cap, which Lua may ask again after an
     * emergency collection (see sl_lua_alloc) */
    struct {
        int pending;
        void *ptr;
        size_t osize, nsize;
    } refused;
    long guard_left; /* instructions left to the code under the outermost guard */
    int guarding;    /* a guard is in force (sl_guard_enter) */
    int dirs_unread; /* the last load could not read a handler directory */
    /* freed small blocks of the Lua state, by size class, kept for reuse
     * (lua_alloc.c: every run allocates and frees the same few dozen) */
    struct {
        void *head;
        int count;
    } blocks[SL_BLOCK_CLASSES];
};

/* Lua code the host runs outside a task's own budget — a handler file's top level,
 * the runtime's functions, an error value's metamethods, the __close handlers of
 * a cancelled task — is held to the instruction budget too: past it, it raises
 * "instruction budget exceeded". Nested guards share the outermost one's budget.
 * (A __gc metamethod runs with hooks off; nothing can bound it.) */
typedef struct {
    lua_Hook hook;
    int mask, count;
    int guarding;
} sl_guard;
void sl_guard_enter(sl_runtime *rt, lua_State *L, sl_guard *saved);
void sl_guard_leave(sl_runtime *rt, lua_State *L, const sl_guard *saved);

/* The runtime stored in L's registry. */
sl_runtime *sl_runtime_of(lua_State *L);
/* Charges cost instructions to the budget of the code running in L (its task's,
 * or guarded host code's) before a library call whose work grows with its input
 * and allocates nothing, so neither the count hook nor the allocator sees it (a
 * hash, a sort). A task whose budget that spends is killed here, before the call. */
void sl_charge(lua_State *L, long cost);
/* The same for guarded host-run code (sl_guard_enter): raises once spent. */
void sl_guard_charge(sl_runtime *rt, lua_State *L, long cost);

/* The Lua state's allocator (lua_alloc.c; ud is the runtime), and the release
 * of the small blocks it keeps for reuse, after lua_close(). */
void *sl_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void sl_lua_alloc_release(sl_runtime *rt);

/* Ends the memory cap's accounting for what ran (a resume of a task, a file's
 * load): a request refused at the cap that Lua did not ask again is the cap. */
void sl_runtime_cap_settle(sl_runtime *rt);

/* The host runs a handler's code outside its task (an error value's __tostring,
 * the __close handlers of a task that ended): the memory cap holds for it as
 * for a task, a refusal raising a memory error in that code alone. Leave with
 * what enter returned. */
int sl_runtime_hosting_enter(sl_runtime *rt);
void sl_runtime_hosting_leave(sl_runtime *rt, int was);

/* Host work a task asks for (the REPL's run() and reload()): the memory cap is
 * refused to the current task only (sl_lua_alloc), and a refusal here would raise
 * into the main state, where nothing catches it, and end the process. So no
 * task is current between these two; leave with what enter returned. */
static inline sl_task *sl_runtime_host_enter(sl_runtime *rt)
{
    sl_task *asking = rt->current;
    rt->current = NULL;
    return asking;
}
static inline void sl_runtime_host_leave(sl_runtime *rt, sl_task *asking)
{
    rt->current = asking;
}

/* Creates a task running the function below the nargs arguments on top of L (all
 * popped); queues it to start. run may be NULL (scripts, REPL). */
sl_task *sl_task_spawn(sl_runtime *rt, lua_State *L, sl_run *run, int nargs);

/* Makes c a child of parent (sluice.spawn): cancelled when the parent ends. */
void sl_task_adopt(sl_task *parent, sl_task *c);

/* A finished task about to be freed uncollected (its parent ended): its handle
 * (lua_spawn.c), if any, takes over its outcome. */
void sl_spawn_keep_outcome(sl_task *t);

/* error_text(value) → message, permanent: an error value said as text, the one
 * reading of it for a run's error (run.c), a dataset's failure and
 * sluice.permanent's message (core.error_text, runtime.lua): a string or a
 * number as it is, a table's `message` (a string or a number, read as
 * v.message is), a value with __tostring as its text, anything else as
 * runtime.lua's describe_error says it (error(nil) raised by a run's code as
 * the handler's, by a script's or a REPL input's as the code's). Call it
 * protected (and, outside a task, guarded): the value's metamethods are a
 * handler's code, and may raise or never return. */
int sl_error_text(lua_State *L);

/* The string at idx, with each NUL byte as U+FFFD (the string on the stack is
 * replaced when it has one): text for C, which would end it at the NUL. */
const char *sl_lua_text(lua_State *L, int idx);

/* When msg is one of Lua's stack overflow messages ("C stack overflow" or
 * "stack overflow", with or without a position, or "error in error handling"),
 * pushes on L the message said plainly, "POS: stack overflow: calls nested too
 * deeply (N levels: …)", and returns it; else returns NULL and pushes nothing.
 * co is the thread that overflowed, its stack as it was (levels from `from` on
 * count), or NULL when that stack is gone. */
const char *sl_stack_overflow_text(lua_State *L, lua_State *co, int from, const char *msg);

/* Appends a line to a run's log and echoes it. */
void sl_run_log(sl_run *run, const char *line);

/* Records a dataset report for the run's outcome (raw JSON object for the key).
 * -1 (the reports as they were) when out of memory. */
int sl_run_dataset(sl_run *run, const char *key, const char *json);

/* Ends the run now with the given outcome (used by run.c and cancellation). */
void sl_run_finish(sl_run *run, int status, const char *result_json, const char *error,
                   int retryable);

/* Calls host[name] (the table lua/sluice/runtime.lua returns) on the main state
 * with the nargs values on top of the stack, in protected mode; leaves nresults.
 * Returns 0, or -1 with the error and traceback in err (stack restored). */
int sl_host_call(sl_runtime *rt, const char *name, int nargs, int nresults, char *err,
                 size_t errlen);

/* Pushes host[name] (nil if absent) on L, any thread of the runtime, without
 * calling anything. */
void sl_host_push(lua_State *L, const char *name);

/* The ready-queue watcher (run.c), started and stopped with the runtime. */
void sl_runtime_start_scheduler(sl_runtime *rt);
void sl_runtime_stop_scheduler(sl_runtime *rt);

/* Cancels every run and task (process exit; run.c). */
void sl_runtime_cancel_all(sl_runtime *rt);

/* Pushes the registry entry for job_type on the main state (lua_host.c) and gives
 * its timeout and version; 0 (nothing pushed) when the type is unknown. */
int sl_host_push_handler(sl_runtime *rt, const char *job_type, double *timeout,
                         const char **version);

/* A pending asset (sluice.assets.begin; lua_files.c) as the body sink of a
 * request (lua_http.c). claim raises, at the position of the function `level`
 * levels up, unless the value at idx is an open, empty, idle pending asset, and
 * marks it busy until sink_done; write is the sink (sl_http_opts.sink). The
 * value must stay referenced while the request runs. */
void *sl_asset_sink_claim(lua_State *L, int idx, const char *what, int level);
int sl_asset_sink_write(void *sink, const char *p, size_t n);
void sl_asset_sink_done(void *sink);

/* Module openers, one per lua_<module>.c. */
int luaopen_sluice_core(lua_State *L);
int luaopen_sluice_db(lua_State *L);
int luaopen_sluice_repl(lua_State *L);
int luaopen_sluice_http(lua_State *L);
int luaopen_sluice_spawn(lua_State *L);
int luaopen_sluice_files(lua_State *L);
int luaopen_sluice_pattern(lua_State *L);
int luaopen_sluice_bounded(lua_State *L);

#endif
