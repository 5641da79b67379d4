-- update: PUT /api/{user}/tasks/{id}: rename and re-describe one of a random user's tasks.
-- Usage: wrk -s bench/wrk/update.lua http://127.0.0.1:PORT -- tokens.tsv [threads]
SCENARIO = "update"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
