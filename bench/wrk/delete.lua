-- delete: DELETE /api/{user}/tasks/{id}: each id from the tokens file is deleted exactly once.
-- Usage: wrk -s bench/wrk/delete.lua http://127.0.0.1:PORT -- tokens.tsv [threads]
SCENARIO = "delete"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
