-- toggle: PATCH /api/{user}/tasks/{id}/complete: flip one of a random user's tasks.
-- Usage: wrk -s bench/wrk/toggle.lua http://127.0.0.1:PORT -- tokens.tsv [threads]
SCENARIO = "toggle"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
