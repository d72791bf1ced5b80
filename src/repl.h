/*
 * repl.h — what `sluice repl` (repl.c) needs from the runtime, implemented in
 * lua_repl.c next to the REPL's Lua primitives: evaluating one input as a task,
 * interrupting it, completing a word, and the worker identity that foreground
 * runs started from the REPL are leased to.
 *
 * All of these run on the main state outside any task (from loop callbacks), and
 * none of them blocks.
 */
#ifndef SL_REPL_H
#define SL_REPL_H

#include "runtime.h"

enum { SL_REPL_ERROR = -1, SL_REPL_STARTED = 0, SL_REPL_MORE = 1 };

/* Foreground runs started by run() are leased to this worker and kept alive by a
 * heartbeat while any is in flight. */
void sl_repl_attach(sl_runtime *rt, const char *worker_id, double lease_seconds);

/* Compiles src as REPL input (a bare expression or "=expr" prints its values,
 * else a statement) and starts it as a task; done(failed, message, data) when it
 * ends, the message an error with its traceback (without the REPL's own frames,
 * and without a traceback that names nothing beyond the message's position).
 * SL_REPL_MORE: src is an unfinished chunk (read another line); with
 * SL_REPL_ERROR the syntax error is in err. One input at a time. */
int sl_repl_eval(sl_runtime *rt, const char *src, size_t len, const char *chunkname,
                 sl_chunk_done_fn done, void *data, char *err, size_t errlen);

/* Cancels the input being evaluated (its runs end as failed with `why` and are
 * recorded); its done callback runs before this returns. 0 if nothing ran. */
int sl_repl_interrupt(sl_runtime *rt, const char *why);

/* Completion of `word`, the text before the cursor being `before` (which ends
 * with word). Returns a malloc'd NULL-terminated array in readline's layout —
 * [0] the longest common prefix, then every candidate, each malloc'd — or NULL;
 * *append is the character to add after a single match ('\0': none). */
char **sl_repl_complete(sl_runtime *rt, const char *before, const char *word, int *append);

/* Ends runs still in flight as failed with `why` (they are recorded). */
void sl_repl_stop_runs(sl_runtime *rt, const char *why);

/* Runs started here that have not been recorded yet. */
int sl_repl_pending(sl_runtime *rt);

#endif
