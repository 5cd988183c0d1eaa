/**
 * `make demo`: a real authorization server (oidc-provider) on loopback, the
 * service started against it as its own process, and a client playing Envoy.
 * Prints each decision and leaves no process behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAuthorizationServer, type AuthorizationServer } from '../test/support/authorization-server.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../test/support/envoy.js';

const CACHE_TTL_SECONDS = 3;
const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js');

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

/** Show a token the way a log should: never whole. */
const shorten = (token: string) => `${token.slice(0, 6)}…(${token.length} chars)`;

interface LogEntry {
  msg?: string;
  grpcPort?: number;
  decision?: string;
  reason?: string;
  cache?: string;
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

async function step(envoy: EnvoyClient, title: string, authorization: string | undefined, why: string): Promise<void> {
  const response = await envoy.check({ headers: authorization ? { authorization } : {} });
  const s = summarize(response);
  const log = await nextDecision();
  console.log(`\n${bold(title)}`);
  console.log(dim(`  ${why}`));
  if (s.allowed) {
    console.log(`  -> ALLOW; Envoy forwards the request with:`);
    for (const [name, value] of Object.entries(s.headers)) console.log(`       ${name}: ${value}`);
    if (s.headersToRemove.length) console.log(`     and removes: ${s.headersToRemove.join(', ')}`);
  } else {
    console.log(`  -> DENY; Envoy answers the client HTTP ${s.httpStatus}`);
    if (s.headers['www-authenticate']) console.log(`       www-authenticate: ${s.headers['www-authenticate']}`);
    console.log(`       body: ${s.body}`);
  }
  if (log) console.log(dim(`     service log: decision=${log.decision} reason=${log.reason} cache=${log.cache} in ${log.ms} ms`));
}

function startService(configPath: string): Promise<{ child: ChildProcess; port: number }> {
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
      if (entry.msg === 'serving' && entry.grpcPort) {
        clearTimeout(timer);
        resolve({ child, port: entry.grpcPort });
      } else if (entry.msg === 'decision') {
        decisions.push(entry);
        decisionArrived?.();
      }
    });
  });
}

function stopService(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', (code) => {
      clearTimeout(force);
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

    writeFileSync(join(dir, 'client-secret'), `${as.introspectors.basic.clientSecret}\n`, { mode: 0o600 });
    const configPath = join(dir, 'config.yaml');
    writeFileSync(
      configPath,
      [
        'server:',
        '  grpc: { host: 127.0.0.1, port: 0 }',
        '  ops: { host: 127.0.0.1, port: 0 }',
        '  shutdownTimeout: 2000',
        'cache:',
        `  validatedTokenTTL: ${CACHE_TTL_SECONDS}`,
        'endpoints:',
        '  - name: demo-idp',
        `    url: ${as.introspectionUrl}`,
        '    authMethod: client_secret_basic',
        `    clientId: ${as.introspectors.basic.clientId}`,
        `    clientSecretFile: ${join(dir, 'client-secret')}`,
        '    authenticationTimeout: 2000',
        'policies:',
        '  - name: demo',
        '    realm: demo-api',
        '',
      ].join('\n'),
    );
    const service = await startService(configPath);
    child = service.child;
    console.log(`${bold('Service')} started as process ${child.pid}, gRPC on 127.0.0.1:${service.port}`);
    console.log(`  cache: validatedTokenTTL ${CACHE_TTL_SECONDS} s (an answer is reused for at most that long, never past the token's exp)`);

    envoy = connectEnvoy(`127.0.0.1:${service.port}`);
    await step(envoy, '1. A request without a token', undefined, 'No Authorization header: RFC 6750 says 401 with a challenge and no error code.');
    await step(envoy, '2. A garbage token', 'Bearer not-a-real-token', 'Well-formed but unknown: the authorization server answers {"active": false}.');

    const token = await as.issueToken({ scope: 'read write' });
    console.log(dim(`\n  (issued a client_credentials token for app-one: ${shorten(token)})`));
    await step(envoy, '3. A fresh valid token', `Bearer ${token}`, 'Introspected once; the answer is cached under the SHA-256 of the token.');

    await as.revoke(token);
    console.log(dim(`\n  (revoked the token at the authorization server)`));
    await step(
      envoy,
      '4. The revoked token, right after revocation',
      `Bearer ${token}`,
      `Still allowed: the cached answer is reused for up to ${CACHE_TTL_SECONDS} s. This window is the price of caching (RFC 7009).`,
    );

    console.log(dim(`\n  (waiting ${CACHE_TTL_SECONDS + 1} s for the cache entry to end)`));
    await sleep((CACHE_TTL_SECONDS + 1) * 1000);
    await step(envoy, '5. The revoked token, after the cache entry ended', `Bearer ${token}`, 'Introspected again: now inactive.');
  } finally {
    envoy?.close();
    if (child) {
      const code = await stopService(child);
      console.log(`\n${bold('Service')} stopped on SIGTERM with exit code ${code}`);
    }
    await as?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

run().catch((error: unknown) => {
  console.error(`demo failed: ${(error as Error).message}`);
  process.exitCode = 1;
});
