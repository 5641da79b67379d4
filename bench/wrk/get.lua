-- get: GET /api/{user}/tasks/{id}: one of a random user's own tasks.
-- Usage: wrk -s bench/wrk/get.lua http://127.0.0.1:PORT -- tokens.tsv [threads]
SCENARIO = "get"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
