-- list: GET /api/{user}/tasks: a random user's whole list (20 tasks by default).
-- Usage: wrk -s bench/wrk/list.lua http://127.0.0.1:PORT -- tokens.tsv [threads]
SCENARIO = "list"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
