/* test_exchange.c - the exchange's retry decisions (exchange_decide), for
 * every failure kind against every combination of what the request is,
 * what was sent and what the client already has, without a socket. */
#include "exchange.h"
#include "unit.h"

static const char *const kinds[] = {"connect", "no response", "timeout", "bad response"};

/* What a user of nginx or HAProxy expects, written out case by case. */
static struct retry_verdict expected(const struct retry_facts *f)
{
    struct retry_verdict v = {.action = RETRY_NEXT};
    if (f->response_begun)
        return (struct retry_verdict){.action = RETRY_CUT};
    bool stale = f->stale_connection && f->kind == FAIL_NO_RESPONSE;
    switch (f->kind) {
    case FAIL_CONNECT:       /* nothing reached the application: always elsewhere, counted */
        v.count_failure = true;
        break;
    case FAIL_NO_RESPONSE:   /* the keep-alive race is free and uncounted */
        v.count_failure = !stale;
        v.fail_status = stale ? 0 : 502;
        v.free_retry = stale;
        break;
    case FAIL_TIMEOUT:
        v.count_failure = true;
        v.fail_status = 504;
        break;
    case FAIL_BAD_RESPONSE:  /* the application answered: not a gateway failure */
        v.fail_status = 502;
        break;
    }
    if (f->sent && !f->retryable) {
        v.action = RETRY_ANSWER;
        v.status = f->kind == FAIL_TIMEOUT ? 504 : 502;
        v.free_retry = false;
    }
    return v;
}

static void test_every_combination(void)
{
    for (int kind = FAIL_CONNECT; kind <= FAIL_BAD_RESPONSE; kind++) {
        for (int bits = 0; bits < 16; bits++) {
            struct retry_facts f = {
                .kind = (enum exchange_failure)kind,
                .retryable = bits & 1,
                .sent = bits & 2,
                .response_begun = bits & 4,
                .stale_connection = bits & 8,
            };
            struct retry_verdict got = exchange_decide(&f), want = expected(&f);
            CHECK_MSG(got.action == want.action && got.status == want.status &&
                          got.fail_status == want.fail_status && got.count_failure == want.count_failure &&
                          got.free_retry == want.free_retry,
                      "%s, retryable %d sent %d begun %d stale %d: action %d/%d status %d/%d fail %d/%d "
                      "count %d/%d free %d/%d",
                      kinds[kind], f.retryable, f.sent, f.response_begun, f.stale_connection, got.action,
                      want.action, got.status, want.status, got.fail_status, want.fail_status,
                      got.count_failure, want.count_failure, got.free_retry, want.free_retry);
        }
    }
}

/* The cases people ask about, spelled out. */
static void test_named_cases(void)
{
    /* a POST whose body reached an application that then died: 502, never twice */
    struct retry_verdict v = exchange_decide(&(struct retry_facts){.kind = FAIL_NO_RESPONSE, .sent = true});
    CHECK(v.action == RETRY_ANSWER && v.status == 502 && v.count_failure);
    /* a GET to a hung application: asked elsewhere, the client told 504 if all hang */
    v = exchange_decide(&(struct retry_facts){.kind = FAIL_TIMEOUT, .sent = true, .retryable = true});
    CHECK(v.action == RETRY_NEXT && v.fail_status == 504 && v.count_failure);
    /* a POST to a refusing application: nothing was sent, so elsewhere; 503 if none */
    v = exchange_decide(&(struct retry_facts){.kind = FAIL_CONNECT});
    CHECK(v.action == RETRY_NEXT && v.fail_status == 0 && v.count_failure);
    /* a POST on a pooled connection the application closed after a long idle:
     * not the application's fault, but the body went out: 502, uncounted */
    v = exchange_decide(&(struct retry_facts){.kind = FAIL_NO_RESPONSE, .sent = true, .stale_connection = true});
    CHECK(v.action == RETRY_ANSWER && v.status == 502 && !v.count_failure);
    /* a GET on such a connection: again, for free */
    v = exchange_decide(&(struct retry_facts){.kind = FAIL_NO_RESPONSE, .sent = true, .retryable = true,
                                              .stale_connection = true});
    CHECK(v.action == RETRY_NEXT && v.free_retry && !v.count_failure && v.fail_status == 0);
    /* anything once the client has part of the answer: cut */
    v = exchange_decide(&(struct retry_facts){.kind = FAIL_NO_RESPONSE, .retryable = true, .response_begun = true});
    CHECK(v.action == RETRY_CUT);
}

void unit_test_exchange(void)
{
    test_every_combination();
    test_named_cases();
}
