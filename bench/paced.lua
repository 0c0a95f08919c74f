-- bench/paced.lua - wrk script: each connection pauses between requests.
--
-- With 50 connections and a 5 ms pause the load is at most 10,000
-- requests/s, well under what one worker serves, so the proxy has headroom
-- and latency measures how much other work (health checks) gets in the way
-- of a request, not the queue of a saturated core.
local pause = tonumber(os.getenv("BENCH_PACE_MS") or "5")

function delay()
    return pause
end
