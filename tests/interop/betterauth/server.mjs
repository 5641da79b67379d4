// A real Better Auth server for todo-api's interop tests.
//
// Configuration (environment variables):
//   PORT                    TCP port to listen on (127.0.0.1 only). Default 0 = any free port.
//   BASE_URL                Better Auth baseURL; also the JWT `iss` and `aud`.
//                           Default http://127.0.0.1:<PORT>.
//   DB_PATH                 SQLite file (created if missing; migrations run at start).
//                           Default ":memory:".
//   JWT_ALG                 EdDSA (default, Ed25519) | ES256 | RS256 | PS256 | ES512.
//   BETTER_AUTH_SECRET      Secret used for cookies and JWKS private-key encryption.
//   JWT_EXPIRATION          Optional JWT lifetime ("15m" default, e.g. "5s", "1h").
//   JWKS_ROTATION_INTERVAL  Optional: Better Auth's own time-based rotation (seconds).
//   JWKS_GRACE_PERIOD       Optional: how long (seconds) an expired key stays in the JWKS.
//   COOKIE_CACHE_STRATEGY   Optional: "jwt" (or "compact", "jwe") turns on session.cookieCache with
//                           that strategy; with "jwt" the `better-auth.session_data` cookie is an
//                           HS256 JWT signed with BETTER_AUTH_SECRET. Default: cookie cache off.
//   COOKIE_CACHE_MAX_AGE    Optional: cookieCache.maxAge in seconds (Better Auth's default 300).
//
// Prints exactly one line "READY <port>" on stdout once it is listening.
// See README.md for the extra /test/* routes (key rotation).

import http from "node:http";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { bearer } from "better-auth/plugins/bearer";
import { createJwk, jwt } from "better-auth/plugins/jwt";

const SUPPORTED_ALGS = new Set(["EdDSA", "ES256", "ES512", "RS256", "PS256"]);

function optionalSeconds(name) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number of seconds, got ${JSON.stringify(raw)}`);
  }
  return value;
}

const host = "127.0.0.1";
const requestedPort = Number(process.env.PORT ?? "0");
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  throw new Error(`invalid PORT ${JSON.stringify(process.env.PORT)}`);
}
const alg = process.env.JWT_ALG || "EdDSA";
if (!SUPPORTED_ALGS.has(alg)) {
  throw new Error(`unsupported JWT_ALG ${JSON.stringify(alg)}; use one of ${[...SUPPORTED_ALGS].join(", ")}`);
}
const dbPath = process.env.DB_PATH || ":memory:";
const secret =
  process.env.BETTER_AUTH_SECRET || "todo-api-interop-test-secret-not-for-production-0123456789";

// Bind first so that PORT=0 works and BASE_URL can default to the real port.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(requestedPort, host, () => {
    server.off("error", reject);
    resolve();
  });
});
const port = server.address().port;
const baseURL = (process.env.BASE_URL || `http://${host}:${port}`).replace(/\/+$/, "");

const jwtOptions = {
  jwks: {
    // EdDSA defaults to Ed25519 inside Better Auth; the other algs take no curve option.
    keyPairConfig: alg === "EdDSA" ? { alg, crv: "Ed25519" } : { alg },
    rotationInterval: optionalSeconds("JWKS_ROTATION_INTERVAL"),
    gracePeriod: optionalSeconds("JWKS_GRACE_PERIOD"),
  },
  jwt: {
    expirationTime: process.env.JWT_EXPIRATION || "15m",
    // issuer / audience are left unset on purpose: Better Auth then uses baseURL for both.
  },
};

const COOKIE_CACHE_STRATEGIES = new Set(["jwt", "compact", "jwe"]);
const cookieCacheStrategy = process.env.COOKIE_CACHE_STRATEGY || undefined;
if (cookieCacheStrategy !== undefined && !COOKIE_CACHE_STRATEGIES.has(cookieCacheStrategy)) {
  throw new Error(`unsupported COOKIE_CACHE_STRATEGY ${JSON.stringify(cookieCacheStrategy)}`);
}
const cookieCacheMaxAge = optionalSeconds("COOKIE_CACHE_MAX_AGE");

const database = new Database(dbPath);
const authOptions = {
  appName: "todo-api-interop",
  baseURL,
  basePath: "/api/auth",
  secret,
  database,
  trustedOrigins: [baseURL],
  emailAndPassword: { enabled: true, autoSignIn: true, requireEmailVerification: false },
  // The session cookie cache, as a frontend that reads `better-auth.session_data` configures it.
  ...(cookieCacheStrategy
    ? { session: { cookieCache: { enabled: true, strategy: cookieCacheStrategy, maxAge: cookieCacheMaxAge } } }
    : {}),
  // Keep Better Auth's Origin/CSRF checks on even if NODE_ENV=test or TEST=1 is set
  // (Better Auth disables them by default in test mode).
  advanced: { disableOriginCheck: false },
  // Tests sign up many users quickly from one IP; Better Auth enables this only in production anyway.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  plugins: [jwt(jwtOptions), bearer()],
};

// Create the schema (user, session, account, verification, jwks) programmatically.
const { runMigrations } = await getMigrations(authOptions);
await runMigrations();

const auth = betterAuth(authOptions);
const authHandler = toNodeHandler(auth);

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8").trim();
  return text ? JSON.parse(text) : {};
}

async function listKeys(ctx) {
  const rows = await ctx.adapter.findMany({ model: "jwks" });
  return rows
    .map((row) => ({
      kid: row.id,
      alg: row.alg ?? alg,
      createdAt: new Date(row.createdAt).toISOString(),
      expiresAt: row.expiresAt ? new Date(row.expiresAt).toISOString() : null,
    }))
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

// Test-only routes, outside Better Auth's /api/auth namespace. They use Better Auth's own
// context, adapter and jwt-plugin key generator, so keys are stored exactly like real ones.
async function handleTestRoute(req, res, pathname) {
  const ctx = await auth.$context;
  if (req.method === "GET" && pathname === "/test/keys") {
    return sendJson(res, 200, { keys: await listKeys(ctx) });
  }
  if (req.method === "POST" && pathname === "/test/rotate-key") {
    const before = await listKeys(ctx);
    // Signing picks the newest live key (by createdAt); make sure the new key is strictly newer.
    const newest = before.at(-1);
    if (newest) {
      const wait = new Date(newest.createdAt).getTime() + 2 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const created = await createJwk({ context: ctx }, jwtOptions);
    return sendJson(res, 200, {
      kid: created.id,
      alg: created.alg ?? alg,
      previousKids: before.map((k) => k.kid),
    });
  }
  if (req.method === "POST" && pathname === "/test/delete-key") {
    const body = await readJson(req);
    if (typeof body.kid !== "string" || !body.kid) return sendJson(res, 400, { error: "kid required" });
    await ctx.adapter.delete({ model: "jwks", where: [{ field: "id", value: body.kid }] });
    return sendJson(res, 200, { deleted: body.kid, keys: await listKeys(ctx) });
  }
  return sendJson(res, 404, { error: "not found" });
}

server.on("request", (req, res) => {
  const pathname = new URL(req.url ?? "/", baseURL).pathname;
  if (pathname === "/health") return sendJson(res, 200, { ok: true, alg, baseURL });
  if (pathname.startsWith("/test/")) {
    handleTestRoute(req, res, pathname).catch((err) => {
      console.error(err);
      if (!res.headersSent) sendJson(res, 500, { error: String(err?.message ?? err) });
      else res.end();
    });
    return;
  }
  if (pathname.startsWith("/api/auth/") || pathname === "/api/auth") {
    authHandler(req, res).catch((err) => {
      console.error(err);
      if (!res.headersSent) sendJson(res, 500, { error: String(err?.message ?? err) });
      else res.end();
    });
    return;
  }
  sendJson(res, 404, { error: "not found" });
});

function shutdown() {
  server.close(() => {
    database.close();
    process.exit(0);
  });
  server.closeAllConnections?.();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

process.stdout.write(`READY ${port}\n`);
