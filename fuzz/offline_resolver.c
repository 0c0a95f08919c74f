/* offline_resolver.c - getaddrinfo without DNS while a harness runs.
 *
 * The config loader resolves `host = "..."` when it loads a file. A fuzzer
 * makes up host names by the million: each would wait on a name server,
 * and the answer would change from one run to the next, so a crash could
 * not be replayed. While fuzz_offline is set, this definition (which the
 * program's own symbol takes precedence over the C library's) adds
 * AI_NUMERICHOST, so literal addresses still resolve and every name but
 * "localhost" (answered from /etc/hosts) fails at once, deterministically.
 * Outside a harness call it passes every call through unchanged.
 */
#include "fuzz.h"

#include <dlfcn.h>
#include <netdb.h>
#include <string.h>

bool fuzz_offline;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                                  struct addrinfo **);
    static getaddrinfo_fn resolved;     /* atomic: the unit tests' threads resolve too */
    getaddrinfo_fn next = __atomic_load_n(&resolved, __ATOMIC_ACQUIRE);
    if (!next) {
        next = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
        __atomic_store_n(&resolved, next, __ATOMIC_RELEASE);
    }
    if (!next)
        return EAI_SYSTEM;
    if (!fuzz_offline || !node || strcmp(node, "localhost") == 0)
        return next(node, service, hints, res);
    struct addrinfo numeric = hints ? *hints : (struct addrinfo){.ai_family = AF_UNSPEC};
    numeric.ai_flags |= AI_NUMERICHOST;
    return next(node, service, &numeric, res);
}
