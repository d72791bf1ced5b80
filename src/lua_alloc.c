/*
 * lua_alloc.c — the Lua state's allocator: the memory cap (a running task, a
 * loading handler file or hosted handler code is refused memory past it; the
 * host's own work never is), the charge of what a task allocates to its
 * instruction budget, and the reuse of small blocks.
 */
#include "runtime_int.h"

#include <stdlib.h>
#include <string.h>

/* Bytes allocated that cost one instruction of the budget. Work proportional to
 * what a task allocates is not all counted in instructions: `s = s .. piece` in a
 * loop copies the whole string each time, one instruction whatever its length,
 * so 50,000 appends of 100 bytes held the loop for some 45 s within the budget
 * and past the run's timeout. Copying and collecting 16 bytes costs about what
 * an instruction does: the default budget allows some 1.6 GB between waits. */
#define SL_BYTES_PER_INSTRUCTION 16

/* The running task (or the loading file) is past the memory cap for good. */
static void over_cap(sl_runtime *rt)
{
    if (rt->loading)
        rt->load_over_cap = 1;
    else if (rt->hosting)
        return; /* the memory error is the hosted code's own, not the running task's */
    else if (rt->current && !rt->current->kill)
        rt->current->kill = rt->current->run ? "memory limit exceeded: the Lua state's cap was "
                                               "reached while this run allocated"
                                             : "memory limit exceeded: the Lua state's cap was "
                                               "reached while this code allocated";
}

void sl_runtime_cap_settle(sl_runtime *rt)
{
    if (rt->refused.pending) over_cap(rt);
    rt->refused.pending = 0;
}

int sl_runtime_hosting_enter(sl_runtime *rt)
{
    sl_runtime_cap_settle(rt); /* a refusal before is the running task's, if any */
    int was = rt->hosting;
    rt->hosting = 1;
    return was;
}

void sl_runtime_hosting_leave(sl_runtime *rt, int was)
{
    rt->refused.pending = 0; /* not asked again: Lua raised the memory error */
    rt->hosting = was;
}

/* Small blocks. A run allocates and frees a few dozen small blocks (its
 * coroutine, its tables and closures), and the C library's allocator took a
 * fifth of the daemon's time at 20,000 runs a second; a freed block of up to
 * 256 bytes goes to a list of its 16-byte class instead (at most BLOCK_KEEP a
 * class), where the next request of that class finds it. A block of a class is
 * at least the class's size: a block shrunk in place, even a large one, is as
 * good as a new one. The blocks kept are the host's, not Lua's: the memory
 * cap counts what Lua holds, and the lists hold at most 2.1 MiB besides (1,024
 * blocks of each class). Under AddressSanitizer every block goes back to the C
 * library, which then still sees a use after free. */
#define BLOCK_GRAIN ((size_t)16)
#define BLOCK_MAX (SL_BLOCK_CLASSES * BLOCK_GRAIN)
#define BLOCK_KEEP 1024
#if defined(__SANITIZE_ADDRESS__)
#define BLOCK_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BLOCK_CACHE 0
#endif
#endif
#ifndef BLOCK_CACHE
#define BLOCK_CACHE 1
#endif

static size_t block_class(size_t n)
{
    return (n - 1) / BLOCK_GRAIN;
}

static void *block_get(sl_runtime *rt, size_t n)
{
    if (!BLOCK_CACHE || n > BLOCK_MAX) return malloc(n);
    size_t c = block_class(n);
    void *p = rt->blocks[c].head;
    if (!p) return malloc((c + 1) * BLOCK_GRAIN);
    memcpy(&rt->blocks[c].head, p, sizeof p);
    rt->blocks[c].count--;
    return p;
}

static void block_put(sl_runtime *rt, void *p, size_t n)
{
    size_t c = block_class(n);
    if (!BLOCK_CACHE || n > BLOCK_MAX || rt->blocks[c].count >= BLOCK_KEEP) {
        free(p);
        return;
    }
    memcpy(p, &rt->blocks[c].head, sizeof p);
    rt->blocks[c].head = p;
    rt->blocks[c].count++;
}

void sl_lua_alloc_release(sl_runtime *rt)
{
    for (int c = 0; c < SL_BLOCK_CLASSES; c++) {
        while (rt->blocks[c].head) {
            void *p = rt->blocks[c].head;
            memcpy(&rt->blocks[c].head, p, sizeof p);
            free(p);
        }
        rt->blocks[c].count = 0;
    }
}

/* realloc() for Lua's blocks: old is the block's size (0: a new block). A
 * shrink never fails, as Lua requires: a block that shrinks to a small size
 * stays where it is. */
static void *block_resize(sl_runtime *rt, void *ptr, size_t old, size_t n)
{
    if (!ptr) return block_get(rt, n);
    if (!BLOCK_CACHE || (old > BLOCK_MAX && n > BLOCK_MAX)) return realloc(ptr, n);
    /* here n <= old means n <= BLOCK_MAX */
    if (n <= old || block_class(n) == block_class(old)) return ptr;
    void *q = block_get(rt, n);
    if (!q) return NULL;
    memcpy(q, ptr, old);
    block_put(rt, ptr, old);
    return q;
}

void *sl_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sl_runtime *rt = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        rt->mem_used -= old;
        if (ptr) block_put(rt, ptr, old);
        return NULL;
    }
    /* Only a running task or a loading handler file is refused memory; the host's
     * own work always gets it. Out-of-memory policy: the task that crosses the cap
     * is killed (see run.c), the file is rejected (load_one); a real malloc
     * failure raises a memory error in whatever ran.
     * The memory past the cap may be garbage, this run's or another's, that the
     * incremental collector has not reached yet: a run was killed (and not
     * retried) for the garbage of a loop whose live data was half the cap. So a
     * first refusal only refuses; Lua then collects in full and asks again (the
     * same request, nothing allocated between). Refused again, or not asked again
     * (Lua raised a memory error instead, which the code may catch: the next
     * request is another, or the resume ends), it is the cap. */
    if (nsize > old && (rt->current || rt->loading || rt->hosting)) {
        int again = rt->refused.pending && rt->refused.ptr == ptr && rt->refused.osize == osize &&
                    rt->refused.nsize == nsize;
        if (rt->refused.pending && !again) over_cap(rt);
        rt->refused.pending = 0;
        if (rt->mem_used + (nsize - old) > rt->opts.memory_limit) {
            if (again || rt->load_over_cap || (rt->current && rt->current->kill)) {
                over_cap(rt);
                return NULL;
            }
            rt->refused.pending = 1;
            rt->refused.ptr = ptr;
            rt->refused.osize = osize;
            rt->refused.nsize = nsize;
            return NULL;
        }
    }
    void *p = block_resize(rt, ptr, old, nsize);
    if (!p) return NULL;
    rt->mem_used = rt->mem_used - old + nsize;
    if (nsize > old) { /* charged where the hooks count: guarded code, else the task */
        long cost = (long)((nsize - old) / SL_BYTES_PER_INSTRUCTION);
        if (rt->guarding)
            rt->guard_left -= cost;
        else if (rt->current)
            rt->current->budget -= cost;
    }
    return p;
}
