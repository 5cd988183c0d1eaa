/**
 * `make demo`: a real authorization server (oidc-provider) on loopback, the
 * service started against it as its own process, and a client playing Envoy.
 * Prints each decision (two routes, a revocation ended by DELETE /cache, the
 * authorization server stopped) and two /metrics lines, and leaves no
 * process behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { startAuthorizationServer, type AuthorizationServer } from '../test/support/authorization-server.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../test/support/envoy.js';

const CACHE_TTL_SECONDS = 60;
const FAILURES_TO_OPEN = 2;
const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js');

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

/** Show a token the way a log should: never whole. */
const shorten = (token: string) => `${token.slice(0, 6)}…(${token.length} chars)`;

interface LogEntry {
  msg?: string;
  grpcPort?: number;
  opsPort?: number;
  adminPort?: number;
  decision?: string;
  reason?: string;
  policy?: string;
  cache?: string;
  detail?: string;
  ms?: number;
}

/** Decision log lines of the service, in order, for the step that caused them. */
const decisions: LogEntry[] = [];
let decisionArrived: (() => void) | undefined;

async function nextDecision(): Promise<LogEntry | undefined> {
  if (decisions.length === 0) {
    await Promise.race([new Promise<void>((resolve) => (decisionArrived = resolve)), sleep(1000)]);
  }
  return decisions.shift();
}

interface Request {
  authorization?: string;
  path?: string;
}

/** One Check, its answer and the service's log line; `brief` gives a repeat one line. */
async function step(envoy: EnvoyClient, title: string, request: Request, why: string, brief = false): Promise<void> {
  const path = request.path ?? '/orders/42';
  const response = await envoy.check({ headers: request.authorization ? { authorization: request.authorization } : {}, path });
  const s = summarize(response);
  const log = await nextDecision();
  const logged = log
    ? `service log: policy=${log.policy} decision=${log.decision} reason=${log.reason} cache=${log.cache}${log.detail ? ` detail="${log.detail}"` : ''} in ${log.ms} ms`
    : 'no service log line';
  console.log(`\n${bold(title)} ${dim(`(GET ${path})`)}`);
  console.log(dim(`  ${why}`));
  if (brief) {
    console.log(`  -> ${s.allowed ? 'ALLOW' : `DENY, HTTP ${s.httpStatus}`}; ${dim(logged)}`);
    return;
  }
  if (s.allowed) {
    console.log(`  -> ALLOW; Envoy forwards the request with:`);
    for (const [name, value] of Object.entries(s.headers)) console.log(`       ${name}: ${value}`);
  } else {
    console.log(`  -> DENY; Envoy answers the client HTTP ${s.httpStatus}`);
    if (s.headers['www-authenticate']) console.log(`       www-authenticate: ${s.headers['www-authenticate']}`);
    console.log(`       body: ${s.body}`);
  }
  console.log(dim(`     ${logged}`));
}

/** The lines of the ops port's /metrics whose start is one of `prefixes`, in that order. */
async function metricLines(opsPort: number, prefixes: string[]): Promise<string[]> {
  const { body } = await request(`http://127.0.0.1:${opsPort}/metrics`, { headersTimeout: 2000, bodyTimeout: 2000 });
  const lines = (await body.text()).split('\n');
  return prefixes.map((prefix) => lines.find((line) => line.startsWith(prefix)) ?? `${prefix} (not found)`);
}

function startService(configPath: string): Promise<{ child: ChildProcess; port: number; opsPort: number; adminPort: number }> {
  const child = spawn(process.execPath, [main, '--config', configPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'info' },
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the service did not start within 10 s')), 10_000);
    child.once('exit', (code) => reject(new Error(`the service exited with code ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: LogEntry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === 'serving' && entry.grpcPort && entry.opsPort && entry.adminPort) {
        clearTimeout(timer);
        resolve({ child, port: entry.grpcPort, opsPort: entry.opsPort, adminPort: entry.adminPort });
      } else if (entry.msg === 'decision') {
        decisions.push(entry);
        decisionArrived?.();
      }
    });
  });
}

/** SIGTERM, then SIGKILL after 5 s; resolves with the exit code, or null when even that took too long. */
function stopService(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
    const giveUp = setTimeout(() => resolve(null), 8_000);
    child.once('exit', (code) => {
      clearTimeout(force);
      clearTimeout(giveUp);
      resolve(code);
    });
    child.kill('SIGTERM');
  });
}

async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'introspection-authz-demo-'));
  let as: AuthorizationServer | undefined;
  let child: ChildProcess | undefined;
  let envoy: EnvoyClient | undefined;
  try {
    as = await startAuthorizationServer({ accessTokenTtlSeconds: 3600 });
    console.log(`${bold('Authorization server')} (oidc-provider) at ${as.issuer}`);
    console.log(`  introspection endpoint: ${as.introspectionUrl}`);

    const adminToken = randomBytes(24).toString('base64url');
    writeFileSync(join(dir, 'client-secret'), `${as.introspectors.basic.clientSecret}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'admin-token'), `${adminToken}\n`, { mode: 0o600 });
    const configPath = join(dir, 'config.yaml');
    writeFileSync(
      configPath,
      [
        'server:',
        '  grpc: { host: 127.0.0.1, port: 0 }',
        '  ops: { host: 127.0.0.1, port: 0 }',
        '  admin: { host: 127.0.0.1, port: 0 }',
        '  shutdownTimeout: 2000',
        'cache:',
        `  validatedTokenTTL: ${CACHE_TTL_SECONDS}`,
        'admin:',
        `  tokenFile: ${join(dir, 'admin-token')}`,
        'endpoints:',
        '  - name: demo-idp',
        `    url: ${as.introspectionUrl}`,
        '    authMethod: client_secret_basic',
        `    clientId: ${as.introspectors.basic.clientId}`,
        `    clientSecretFile: ${join(dir, 'client-secret')}`,
        '    authenticationTimeout: 2000',
        `    circuitBreaker: { failures: ${FAILURES_TO_OPEN}, resetTimeout: 30000 }`,
        'policies:',
        '  - name: orders',
        '    realm: demo-api',
        '    scopes: read',
        '  - name: reports',
        '    realm: demo-api',
        '    scopes: admin',
        '    match: [{ pathPrefix: /reports }]',
        'defaultPolicy: orders',
        '',
      ].join('\n'),
    );
    const service = await startService(configPath);
    child = service.child;
    console.log(`${bold('Service')} started as process ${child.pid}, gRPC on 127.0.0.1:${service.port}, ops port 127.0.0.1:${service.opsPort}`);
    console.log(`  policies: orders (scope read, the default), reports (scope admin, paths under /reports); cache: validatedTokenTTL ${CACHE_TTL_SECONDS} s`);

    envoy = connectEnvoy(`127.0.0.1:${service.port}`);
    await step(envoy, '1. A request without a token', {}, 'No Authorization header: RFC 6750 says 401 with a challenge and no error code.');
    await step(envoy, '2. A garbage token', { authorization: 'Bearer not-a-real-token' }, 'Well-formed but unknown: the authorization server answers {"active": false}.');

    const token = await as.issueToken({ scope: 'read write' });
    console.log(dim(`\n  (issued a client_credentials token for app-one with scope "read write": ${shorten(token)})`));
    await step(envoy, '3. A fresh valid token', { authorization: `Bearer ${token}` }, 'Introspected once; the answer is cached under the SHA-256 of the token.');
    await step(
      envoy,
      '4. The same token on a second route',
      { authorization: `Bearer ${token}`, path: '/reports/2026' },
      'Paths under /reports pick the reports policy, which needs scope admin: the token is active, but that is not enough.',
    );

    await as.revoke(token);
    console.log(dim(`\n  (revoked the token at the authorization server)`));
    await step(
      envoy,
      '5. The revoked token, right after revocation',
      { authorization: `Bearer ${token}` },
      `Still allowed from the cache, for up to validatedTokenTTL (${CACHE_TTL_SECONDS} s): the price of caching (RFC 7009).`,
    );

    const evicted = await request(`http://127.0.0.1:${service.adminPort}/cache`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
      headersTimeout: 2000,
      bodyTimeout: 2000,
    });
    console.log(`\n${bold('DELETE /cache')} on the admin port (apart from the ops port Prometheus reaches), with the admin token and the revoked token in the body`);
    console.log(`  -> HTTP ${evicted.statusCode} ${(await evicted.body.text()).trim()}`);
    await step(envoy, '6. The revoked token, after DELETE /cache', { authorization: `Bearer ${token}` }, 'The operator ended the cached allow at once: introspected again, now inactive.');

    console.log(`\n${bold('Metrics')} at http://127.0.0.1:${service.opsPort}/metrics (Prometheus text format), two of its lines:`);
    for (const line of await metricLines(service.opsPort, ['authz_check_decisions_total{decision="deny",reason="insufficient_scope"', 'authz_cache_lookups_total{result="hit"}'])) {
      console.log(`  ${line}`);
    }

    const another = await as.issueToken({ scope: 'read' });
    await as.close();
    as = undefined;
    console.log(dim(`\n  (issued another token, ${shorten(another)}, then stopped the authorization server)`));
    await step(
      envoy,
      '7. A valid token while the authorization server is down',
      { authorization: `Bearer ${another}` },
      'Fail closed: no answer is a deny (401 without an error code: the token may be fine), never an allow.',
    );
    for (let i = 2; i <= FAILURES_TO_OPEN; i += 1) {
      await step(envoy, `7.${i} Again`, { authorization: `Bearer ${another}` }, `Failure ${i} in a row.`, true);
    }
    await step(
      envoy,
      `7.${FAILURES_TO_OPEN + 1} Again, with the circuit breaker open`,
      { authorization: `Bearer ${another}` },
      `After ${FAILURES_TO_OPEN} failures in a row the endpoint is not even asked: denied at once, no waiting on a dead server.`,
      true,
    );
    for (const line of await metricLines(service.opsPort, ['authz_introspection_circuit_state{endpoint="demo-idp"}'])) {
      console.log(`  ${line}   ${dim('(2 = open; it lets one probe through after resetTimeout)')}`);
    }
  } finally {
    envoy?.close();
    if (child) {
      const code = await stopService(child);
      console.log(`\n${bold('Service')} (process ${child.pid}) stopped on SIGTERM with exit code ${code}`);
    }
    await as?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

run().catch((error: unknown) => {
  console.error(`demo failed: ${(error as Error).message}`);
  process.exitCode = 1;
});
