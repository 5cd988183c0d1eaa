/**
 * The process's health as the two sides see it through its life: the ops HTTP
 * server (/healthz, /readyz) and gRPC health, from start-up through serving and
 * the SIGTERM drain to exit; and an ops port that is already taken.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { connectEnvoy, healthClientConstructor, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import {
  ensureBuilt,
  freePort,
  httpGet,
  logLines,
  run,
  serving,
  tryConnect,
  waitFor,
  within,
  type HttpAnswer,
} from '../support/service-process.js';

t.before(ensureBuilt);

const dir = mkdtempSync(join(tmpdir(), 'authz-readiness-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function writeConfig(text: string): string {
  const path = join(dir, `config-${(files += 1)}.yaml`);
  writeFileSync(path, text);
  return path;
}

const TOKEN = 'readiness-token-0123456789abcdef';

/** Statuses seen on a Health/Watch stream. */
function watchHealth(address: string) {
  const Health = healthClientConstructor();
  const client = new Health(address, grpc.credentials.createInsecure());
  const statuses: string[] = [];
  const call = (client as unknown as Record<string, Function>).Watch!({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
  call.on('data', ({ status }) => statuses.push(status));
  call.on('error', () => {
    // CANCELLED after cancel(), or UNAVAILABLE when the server goes: both end the watch.
  });
  return {
    statuses,
    cancel(): void {
      call.cancel();
      client.close();
    },
  };
}

/** One probe of /readyz: the answer, or the connection error's code. */
const probe = (port: number, path: string): Promise<HttpAnswer | string> =>
  httpGet(port, path, 1000).catch((error: NodeJS.ErrnoException) => error.code ?? error.message);

t.test('start, ready, drain and exit, seen on /healthz, /readyz and gRPC health', async (t) => {
  const fake = await startFakeAuthorizationServer();
  t.teardown(() => fake.close());
  const answer = answerByToken({ [TOKEN]: { sub: 'alice' } });
  fake.respond((request) => ({ ...(answer(request) as object), delayMs: 800 }));

  // A known ops port, so that it can be probed before the process says it is serving.
  const opsPort = await freePort();
  const shutdownTimeout = 3000;
  const path = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: ${opsPort}}
  shutdownTimeout: ${shutdownTimeout}
log:
  level: info
endpoints:
  - name: slow
    url: ${fake.url}
    authMethod: none
`);
  const proc = run(t, ['--config', path]);

  // Start: the ops port refuses until it answers; its first answer is already "ready".
  const early: Array<HttpAnswer | string> = [];
  const first = await waitFor(async () => {
    const seen = await probe(opsPort, '/readyz');
    early.push(seen);
    return typeof seen === 'string' ? undefined : seen;
  }, 10_000, '/readyz answering');
  t.ok(early.slice(0, -1).every((seen) => seen === 'ECONNREFUSED'), `refused until up (${[...new Set(early.slice(0, -1))].join(', ') || 'answered at once'})`);
  t.same(first, { status: 200, body: 'ready\n' }, 'its first answer is 200 ready: the gRPC server is up before the ops server');

  const ports = await serving(proc);
  t.equal(ports.opsPort, opsPort, 'the serving line gives the configured ops port');
  const address = `127.0.0.1:${ports.grpcPort}`;
  const envoy = connectEnvoy(address);
  t.teardown(() => envoy.close());

  // Ready: both sides agree.
  t.equal(await envoy.health(), 'SERVING', 'gRPC health SERVING');
  t.same(await httpGet(opsPort, '/healthz'), { status: 200, body: 'ok\n' }, '/healthz 200 while serving');
  t.same(await httpGet(opsPort, '/readyz'), { status: 200, body: 'ready\n' }, '/readyz 200 while serving');
  const quick = summarize(await envoy.check({ headers: { authorization: `Bearer ${TOKEN}` }, timeoutMs: 5000 }));
  t.equal(quick.allowed, true, 'a Check is allowed while serving');

  const watch = watchHealth(address);
  t.teardown(() => watch.cancel());
  await waitFor(() => (watch.statuses.includes('SERVING') ? true : undefined), 2000, 'health watch SERVING');

  // Drain: a Check in flight (the endpoint takes 800 ms, and the answer is not cached: a new token).
  const other = 'readiness-token-second-0123456789';
  fake.respond((request) => ({ json: { active: true, sub: request.body.get('token') === other ? 'bob' : 'alice' }, delayMs: 800 }));
  const before = fake.requests.length;
  const inFlight = envoy.check({ headers: { authorization: `Bearer ${other}` }, timeoutMs: 8000 });
  let settled = false;
  inFlight.then(
    () => (settled = true),
    () => (settled = true),
  ); // awaited below
  await fake.waitForRequests(before + 1, 3000);
  const signalledAt = Date.now();
  proc.child.kill('SIGTERM');

  const draining = await waitFor(async () => {
    const seen = await probe(opsPort, '/readyz');
    return typeof seen !== 'string' && seen.status !== 200 ? seen : undefined;
  }, 600, '/readyz turning not ready');
  t.same(draining, { status: 503, body: 'not ready: draining\n' }, '/readyz 503 "not ready: draining" during the drain');
  t.same(await httpGet(opsPort, '/healthz'), { status: 200, body: 'ok\n' }, '/healthz stays 200 during the drain');
  t.equal((await httpGet(opsPort, '/metrics')).status, 200, '/metrics is still served during the drain');
  await waitFor(() => (watch.statuses.includes('NOT_SERVING') ? true : undefined), 1000, 'health watch NOT_SERVING');
  t.same(watch.statuses, ['SERVING', 'NOT_SERVING'], 'gRPC health went NOT_SERVING');
  t.equal(settled, false, `all of that was seen while the Check was still in flight (${Date.now() - signalledAt} ms after SIGTERM)`);
  watch.cancel();

  const response = summarize(await within(inFlight, 5000, 'in-flight Check'));
  t.equal(response.allowed, true, 'the in-flight Check completes with its allow');
  t.equal(response.headers['x-auth-subject'], 'bob', 'with its own identity');

  // Exit.
  const exit = await within(proc.exited, shutdownTimeout + 2000, 'process exit');
  t.same(exit, { code: 0, signal: null }, 'exit code 0');
  t.equal(await tryConnect(opsPort), 'ECONNREFUSED', 'after exit the ops port refuses connections');
  t.equal(await tryConnect(ports.grpcPort), 'ECONNREFUSED', 'and so does the gRPC port');
  const messages = logLines(proc.stdout()).map((line) => line.msg);
  t.same(
    messages.filter((m) => m === 'serving' || m === 'draining' || m === 'stopped'),
    ['serving', 'draining', 'stopped'],
    'logged serving, draining, stopped in that order',
  );
});

t.test('the ops port is already in use: exit 2, one stderr line naming server.ops.port', async (t) => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as AddressInfo).port;
  const path = writeConfig(`server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: ${port}}
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const proc = run(t, ['--config', path]);
  const exit = await within(proc.exited, 10_000, 'exit');
  t.same(exit, { code: 2, signal: null }, 'exit 2: a configuration error');
  const lines = proc.stderr().trimEnd().split('\n');
  t.equal(lines.length, 1, `one stderr line: ${lines.join(' | ')}`);
  t.equal(lines[0], `error: server.ops.port: 127.0.0.1:${port} is already in use`, 'names server.ops.port and the address');
  t.notOk(logLines(proc.stdout()).some((l) => l.msg === 'serving'), 'never said serving');
});
