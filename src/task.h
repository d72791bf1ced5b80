/*
 * task.h — how a Lua-visible C function waits for I/O without blocking the loop.
 *
 * Every run is one or more tasks; a task is a Lua coroutine. A C function that
 * has to wait follows the same steps every time:
 *
 *   sl_task *t = sl_task_check(L, "sluice.http.request");   // misuse raises
 *   ... check arguments; if the answer is known at once, return it directly ...
 *   op = start the operation (arm watcher / add curl handle / send query)
 *   return sl_task_wait(L, t, cancel_op, op);                 // yields
 *
 * and its completion callback (never touching a Lua stack) calls
 *
 *   sl_task_wake(t, push_result, data);
 *
 * The runtime's single resume function later calls push_result(co, data), which
 * pushes the values the Lua call returns and frees data, then resumes the
 * coroutine. If the task is cancelled (run timeout, cancel, shutdown) while
 * waiting, cancel_op(op) is called instead and must stop and free everything the
 * operation holds; if it is cancelled after the wake but before the resume,
 * push_result(NULL, data) is called to free data only.
 */
#ifndef SL_TASK_H
#define SL_TASK_H

#include <lua.h>

struct ev_loop;
struct sl_ctx;
typedef struct sl_task sl_task;

/* Pushes the waiting call's return values on co and returns their count; frees
 * data. With co == NULL it only frees data. */
typedef int (*sl_task_prepare_fn)(lua_State *co, void *data);

/* Stops a pending operation and frees everything it owns. */
typedef void (*sl_task_cancel_fn)(void *op);

/* The task running on L. Raises a Lua error naming `what` when L is not a sluice
 * task (the main state, or a coroutine the handler created itself). */
sl_task *sl_task_check(lua_State *L, const char *what);

/* The task running on L, or NULL after pushing the message sl_task_check
 * raises (without a position): for a primitive behind a Lua facade, which
 * raises it itself at its caller's line (lua/sluice/spawn.lua, runtime.lua). */
sl_task *sl_task_test(lua_State *L, const char *what);

/* The task running on L, or NULL. */
sl_task *sl_task_of(lua_State *L);

/* Parks the task until sl_task_wake(); `cancel(op)` runs if it is cancelled
 * meanwhile, or at once when L cannot yield here (then it raises, as lua_yield
 * does). Must be the C function's return expression. */
int sl_task_wait(lua_State *L, sl_task *t, sl_task_cancel_fn cancel, void *op);

/* The pending operation finished: drop its cancel hook and queue the task to be
 * resumed with the values prepare(co, data) pushes. Safe from any callback. */
void sl_task_wake(sl_task *t, sl_task_prepare_fn prepare, void *data);

/* Cancels a task: stops its pending operation, closes its coroutine (its
 * to-be-closed variables' __close handlers run), ends a chunk with `why` as its
 * error; the task is freed. */
void sl_task_cancel(sl_task *t, const char *why);

struct sl_ctx *sl_task_ctx(sl_task *t);

/* The id of the run the task belongs to ("" outside runs, e.g. the REPL). */
const char *sl_task_run_id(sl_task *t);

/* Appends a line to the run's log (and echoes it). */
void sl_task_log(sl_task *t, const char *line);

#endif
