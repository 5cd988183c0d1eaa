/**
 * The real process: `node dist/src/main.js --config FILE`, its start-up
 * errors, its graceful shutdown on SIGTERM, and what it writes to its logs.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { startAuthorizationServer } from '../support/authorization-server.js';
import { connectEnvoy, healthClientConstructor, summarize, type EnvoyClient } from '../support/envoy.js';
import { ensureBuilt, logLines, MAIN, ROOT, run, serving, within, type Proc } from '../support/service-process.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

const PACKAGE_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

t.before(ensureBuilt);

const dir = mkdtempSync(join(tmpdir(), 'authz-shutdown-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function writeConfig(text: string): string {
  const path = join(dir, `config-${(files += 1)}.yaml`);
  writeFileSync(path, text);
  return path;
}

/** The gRPC port from the 'serving' log line. */
async function servingPort(proc: Proc): Promise<number> {
  return (await serving(proc)).grpcPort;
}

/** An introspection endpoint that answers "active" only after `delayMs`. */
async function slowEndpoint(t: Test, delayMs: number) {
  const timers = new Set<NodeJS.Timeout>();
  const received: string[] = [];
  let onRequest: (() => void) | undefined;
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      received.push(body);
      onRequest?.();
      const timer = setTimeout(() => {
        timers.delete(timer);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ active: true, client_id: 'app-one', exp: Math.floor(Date.now() / 1000) + 3600 }));
      }, delayMs);
      timers.add(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`,
    received,
    /** Resolves when the next request has been read. */
    nextRequest: () => new Promise<void>((resolve) => (onRequest = resolve)),
  };
}

function slowConfig(url: string, shutdownTimeout: number): string {
  return writeConfig(`server:
  grpc:
    host: 127.0.0.1
    port: 0
  ops: {host: 127.0.0.1, port: 0}
  shutdownTimeout: ${shutdownTimeout}
log:
  level: info
endpoints:
  - name: slow
    url: ${url}
    authMethod: none
`);
}

/** Statuses seen on a Health/Watch stream; cancel() ends the stream. */
function watchHealth(address: string) {
  const Health = healthClientConstructor();
  const client = new Health(address, grpc.credentials.createInsecure());
  const statuses: string[] = [];
  const waiters: Array<{ status: string; resolve: () => void }> = [];
  const call = (client as unknown as Record<string, Function>).Watch!({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
  call.on('data', ({ status }) => {
    statuses.push(status);
    for (const w of waiters.filter((w) => w.status === status)) w.resolve();
  });
  call.on('error', () => {
    // CANCELLED after cancel(), or UNAVAILABLE when the server goes: both end the watch.
  });
  return {
    statuses,
    until(status: string): Promise<void> {
      if (statuses.includes(status)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ status, resolve }));
    },
    cancel(): void {
      call.cancel();
      client.close();
    },
  };
}

t.test('health is SERVING after start; SIGTERM drains an in-flight Check and exits 0', async (t) => {
  const endpoint = await slowEndpoint(t, 500);
  const shutdownTimeout = 3000;
  const proc = run(t, ['--config', slowConfig(endpoint.url, shutdownTimeout)]);
  const port = await servingPort(proc);
  t.ok(port > 0 && port < 65536, `learned the port ${port} from the log`);
  const address = `127.0.0.1:${port}`;
  const envoy: EnvoyClient = connectEnvoy(address);
  t.teardown(() => envoy.close());

  t.equal(await envoy.health(), 'SERVING', 'overall health SERVING');
  t.equal(await envoy.health('envoy.service.auth.v3.Authorization'), 'SERVING', 'Authorization SERVING');

  const watch = watchHealth(address);
  t.teardown(() => watch.cancel());
  await within(watch.until('SERVING'), 2000, 'health watch');

  const requested = endpoint.nextRequest();
  const inFlight = envoy.check({ headers: { authorization: 'Bearer in-flight-token' }, timeoutMs: 8000 });
  inFlight.catch(() => {}); // awaited below; this keeps an early failure from also being an unhandled rejection
  await within(requested, 3000, 'introspection request');
  t.equal(endpoint.received.length, 1, 'the Check is waiting on the slow endpoint');

  const signalledAt = Date.now();
  proc.child.kill('SIGTERM');

  await within(watch.until('NOT_SERVING'), 2000, 'NOT_SERVING on the health watch');
  t.same(watch.statuses, ['SERVING', 'NOT_SERVING'], 'the watch saw the service go NOT_SERVING');
  watch.cancel(); // a health watcher must not hold the drain open; Envoy's would be cancelled by its own shutdown

  // A new call after SIGTERM is answered NOT_SERVING or refused: never SERVING.
  const late = await envoy.health().then(
    (status) => status,
    (error: grpc.ServiceError) => `error ${error.code}`,
  );
  t.not(late, 'SERVING', `a health check after SIGTERM is not SERVING (${late})`);

  const response = await within(inFlight, 5000, 'in-flight Check');
  const answeredAfter = Date.now() - signalledAt;
  const r = summarize(response);
  t.equal(r.allowed, true, 'the in-flight Check still completes with its allow');
  t.equal(r.headers['x-auth-subject'], 'app-one');
  t.ok(answeredAfter >= 200, `it was answered after the signal (${answeredAfter} ms), so it was drained, not done before`);

  const exit = await within(proc.exited, shutdownTimeout + 2000, 'process exit');
  const tookMs = Date.now() - signalledAt;
  t.same(exit, { code: 0, signal: null }, 'exit code 0');
  t.ok(tookMs < shutdownTimeout + 2000, `exited ${tookMs} ms after SIGTERM`);
  const messages = logLines(proc.stdout()).map((line) => line.msg);
  t.ok(messages.includes('draining') && messages.includes('stopped'), 'logged draining and stopped');
  t.match(
    logLines(proc.stdout()).find((line) => line.msg === 'decision'),
    { decision: 'allow', reason: 'ok', endpoint: 'slow' },
    'the drained Check was logged as an allow',
  );
});

t.test('eight shutdowns at once: each logs serving, draining, stopped, in that order', async (t) => {
  // Several at once load the machine, which is when an exit used to write the
  // buffered "stopped" ahead of a "draining" still being written.
  const path = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const procs = Array.from({ length: 8 }, () => run(t, ['--config', path]));
  const orders = await Promise.all(
    procs.map(async (proc) => {
      await serving(proc, 20_000);
      proc.child.kill('SIGTERM');
      const exit = await within(proc.exited, 10_000, 'exit');
      const messages = logLines(proc.stdout()).map((line) => line.msg);
      return { exit, order: messages.filter((m) => m === 'serving' || m === 'draining' || m === 'stopped').join(' ') };
    }),
  );
  t.same(orders.map((o) => o.exit), procs.map(() => ({ code: 0, signal: null })), 'every one exits 0');
  t.same(orders.map((o) => o.order), procs.map(() => 'serving draining stopped'), 'every log has the three lines in order');
});

t.test('SIGTERM with a Check that outlives shutdownTimeout: exit 0 on time, and no allow', async (t) => {
  const endpoint = await slowEndpoint(t, 8000);
  const shutdownTimeout = 500;
  const proc = run(t, ['--config', slowConfig(endpoint.url, shutdownTimeout)]);
  const envoy = connectEnvoy(`127.0.0.1:${await servingPort(proc)}`);
  t.teardown(() => envoy.close());

  const requested = endpoint.nextRequest();
  const inFlight = envoy.check({ headers: { authorization: 'Bearer stuck-token' }, timeoutMs: 9000 }).then(
    (response) => ({ ok: true as const, allowed: summarize(response).allowed }),
    (error: grpc.ServiceError) => ({ ok: false as const, code: error.code }),
  );
  await within(requested, 3000, 'introspection request');
  const signalledAt = Date.now();
  proc.child.kill('SIGTERM');

  const exit = await within(proc.exited, shutdownTimeout + 2000, 'process exit');
  const tookMs = Date.now() - signalledAt;
  t.same(exit, { code: 0, signal: null });
  t.ok(tookMs >= shutdownTimeout - 50, `waited for the in-flight Check up to shutdownTimeout (${tookMs} ms)`);
  t.ok(tookMs < shutdownTimeout + 2000, `then exited (${tookMs} ms)`);
  const outcome = await within(inFlight, 3000, 'cut Check');
  t.not(outcome.ok && outcome.allowed, true, `the cut Check is not an allow (${JSON.stringify(outcome)})`);
});

t.test('configuration errors exit 2 with one line on stderr', async (t) => {
  const secret = `s3cr3t-${randomBytes(8).toString('hex')}`;
  const unknownKey = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: 0}
cache:
  validatedTokenTTL: 60
bogusOption: true
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const misspelt = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: 0}
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    clientId: me
    clientSecert: ${secret}
`);
  const syntax = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: 0
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authorizationValue: "Bearer ${secret}"
`);
  const missing = join(dir, 'no-such-file.yaml');
  // Started together: each one is a Node start-up, and they do not interfere.
  const procs = {
    unknownKey: run(t, ['--config', unknownKey]),
    misspelt: run(t, ['--config', misspelt]),
    missing: run(t, ['--config', missing]),
    syntax: run(t, ['--config', syntax]),
  };
  /** Exit status and the stderr lines of a finished run. */
  const finished = async (proc: Proc) => {
    const exit = await within(proc.exited, 10_000, 'exit');
    return { exit, lines: proc.stderr().trimEnd().split('\n') };
  };

  await t.test('an unknown top-level key', async (t) => {
    const { exit, lines } = await finished(procs.unknownKey);
    t.same(exit, { code: 2, signal: null });
    t.equal(lines.length, 1, `one stderr line: ${lines.join('|')}`);
    t.match(lines[0], /bogusOption/, 'names the key');
    t.ok(lines[0]?.includes(unknownKey), 'names the file');
    t.equal(procs.unknownKey.stdout(), '', 'nothing on stdout: it never served');
  });

  await t.test('a misspelt key in an endpoint, next to a secret', async (t) => {
    const { exit, lines } = await finished(procs.misspelt);
    t.same(exit, { code: 2, signal: null });
    t.equal(lines.length, 1, `one stderr line: ${lines.join('|')}`);
    t.match(lines[0], /endpoints.*clientSecert/, 'names the key and where it is');
    t.notOk(procs.misspelt.stderr().includes(secret), 'never prints the value');
  });

  await t.test('a missing configuration file', async (t) => {
    const { exit, lines } = await finished(procs.missing);
    t.same(exit, { code: 2, signal: null });
    t.equal(lines.length, 1, `one stderr line: ${lines.join('|')}`);
    t.ok(lines[0]?.includes(missing), 'names the file');
    t.match(lines[0], /ENOENT/);
  });

  await t.test('a YAML syntax error', async (t) => {
    const { exit, lines } = await finished(procs.syntax);
    t.same(exit, { code: 2, signal: null });
    t.equal(lines.length, 1, `one stderr line: ${lines.join('|')}`);
    t.match(lines[0], /YAML syntax error at line 3, column 1\b/, 'gives line and column');
    t.notOk(procs.syntax.stderr().includes(secret), 'never quotes a secret from the file');
  });
});

t.test('--version prints the package version and exits 0', async (t) => {
  const proc = run(t, ['--version']);
  const exit = await within(proc.exited, 10_000, 'exit');
  t.same(exit, { code: 0, signal: null });
  t.equal(proc.stdout(), `${PACKAGE_VERSION}\n`, `prints ${PACKAGE_VERSION} and nothing else`);
  t.equal(proc.stderr(), '', 'nothing on stderr');
});

t.test('--version and --help load none of the service (no gRPC, no HTTP)', async (t) => {
  // Node's own list of the built-in modules it loaded, read as the process exits.
  const dir = t.testdir({
    'probe.cjs': "process.on('exit', () => process.stderr.write(JSON.stringify(process.moduleLoadList) + '\\n'));\n",
  });
  for (const flag of ['--version', '--help']) {
    const result = spawnSync(process.execPath, ['--require', join(dir, 'probe.cjs'), MAIN, flag], { encoding: 'utf8', timeout: 20_000, env: {} });
    t.equal(result.status, 0, `${flag}: exit 0`);
    const loaded = JSON.parse(result.stderr.trim().split('\n').pop()!) as string[];
    t.ok(loaded.length > 0, `${flag}: the probe ran`);
    for (const module of ['http2', 'http', 'zlib']) t.notOk(loaded.includes(`NativeModule ${module}`), `${flag}: node:${module} is not loaded`);
  }
});

t.test('the gRPC port is already in use: exit 2, one stderr line, nothing from grpc-js on stdout', async (t) => {
  const blocker = createNetServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as AddressInfo).port;
  const path = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: ${port}}
  ops: {host: 127.0.0.1, port: 0}
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
    issuer: https://as.example
`);
  const proc = run(t, ['--config', path]);
  const exit = await within(proc.exited, 10_000, 'exit');
  t.same(exit, { code: 2, signal: null }, 'exit 2: a configuration error');
  t.same(proc.stderr().trimEnd().split('\n'), [`error: server.grpc.port: 127.0.0.1:${port} is already in use`], 'one line names the key and the address');
  // grpc-js logs its own bind failure; the line above already says it, once.
  t.equal(proc.stdout(), '', 'nothing on stdout: no grpc-js warning, never serving');
});

t.test('debug logs never carry tokens, client secrets or Basic credentials', async (t) => {
  const as = await startAuthorizationServer();
  t.teardown(() => as.close());
  const wrongSecret = `wrong-${randomBytes(16).toString('base64url')}`;
  const path = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
  shutdownTimeout: 2000
log:
  level: info
defaultPolicy: good
endpoints:
  - name: good
    url: ${as.introspectionUrl}
    authMethod: client_secret_basic
    clientId: ${as.introspectors.basic.clientId}
    clientSecret: ${JSON.stringify(as.introspectors.basic.clientSecret)}
  - name: post
    url: ${as.introspectionUrl}
    authMethod: client_secret_post
    clientId: ${as.introspectors.post.clientId}
    clientSecretEnv: POST_SECRET
  - name: bad
    url: ${as.introspectionUrl}
    authMethod: client_secret_basic
    clientId: ${as.introspectors.basic.clientId}
    clientSecret: ${JSON.stringify(wrongSecret)}
policies:
  - name: good
    endpoint: good
  - name: post
    endpoint: post
  - name: bad
    endpoint: bad
`);
  // LOG_LEVEL overrides the file's info.
  const proc = run(t, ['--config', path], { LOG_LEVEL: 'debug', POST_SECRET: as.introspectors.post.clientSecret });
  const envoy = connectEnvoy(`127.0.0.1:${await servingPort(proc)}`);
  t.teardown(() => envoy.close());

  const valid = await as.issueToken({ scope: 'read' });
  const unknown = `unknown${randomBytes(24).toString('base64url')}`;
  const malformed = `bad"${randomBytes(12).toString('hex')}`;
  const bearer = (token: string, policy: string) => ({
    headers: { authorization: `Bearer ${token}`, 'x-request-id': `req-${policy}` },
    contextExtensions: { policy },
  });

  t.equal(summarize(await envoy.check(bearer(valid, 'good'))).allowed, true, 'valid token allowed');
  t.equal(summarize(await envoy.check(bearer(valid, 'post'))).allowed, true, 'valid token allowed via client_secret_post');
  t.equal(summarize(await envoy.check(bearer(unknown, 'good'))).httpStatus, 401, 'unknown token 401');
  t.equal(summarize(await envoy.check(bearer(valid, 'bad'))).httpStatus, 500, 'wrong secret: bad response 500');
  t.equal(summarize(await envoy.check(bearer(malformed, 'good'))).httpStatus, 400, 'malformed token 400');

  proc.child.kill('SIGTERM');
  const exit = await within(proc.exited, 5000, 'process exit');
  t.same(exit, { code: 0, signal: null });

  const output = proc.stdout() + proc.stderr();
  const decisions = logLines(proc.stdout()).filter((line) => line.msg === 'decision');
  t.same(
    decisions.map((d) => [d.requestId, d.reason]),
    [
      ['req-good', 'ok'],
      ['req-post', 'ok'],
      ['req-good', 'inactive'],
      ['req-bad', 'bad_response'],
      ['req-good', 'invalid_request'],
    ],
    'every Check was logged (so the logs below are the real ones)',
  );
  t.ok(logLines(proc.stdout()).every((line) => typeof line.level === 'string'), 'every stdout line is a JSON log line');

  const basic = (id: string, secret: string) => Buffer.from(`${id}:${secret}`).toString('base64');
  const forbidden: Array<[string, string]> = [
    ['valid token', valid],
    ['unknown token', unknown],
    ['malformed token', malformed],
    ['malformed token without its quote', malformed.slice(4)],
    ['basic introspector secret', as.introspectors.basic.clientSecret],
    ['post introspector secret', as.introspectors.post.clientSecret],
    ['wrong secret', wrongSecret],
    ['Basic credentials', 'Basic '],
    ['base64 of the good pair', basic(as.introspectors.basic.clientId, as.introspectors.basic.clientSecret)],
    ['base64 of the wrong pair', basic(as.introspectors.basic.clientId, wrongSecret)],
  ];
  for (const [what, value] of forbidden) t.notOk(output.includes(value), `the logs do not contain the ${what}`);
});
