-- create: POST /api/{user}/tasks: a new task for a random user.
-- Usage: wrk -s bench/wrk/create.lua http://127.0.0.1:PORT -- tokens.tsv [threads]
SCENARIO = "create"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
