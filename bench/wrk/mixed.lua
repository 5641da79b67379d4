-- mixed: 60% list, 10% each of get, create, update and toggle.
-- Usage: wrk -s bench/wrk/mixed.lua http://127.0.0.1:PORT -- tokens.tsv [threads]
SCENARIO = "mixed"
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
