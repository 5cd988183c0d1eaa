/**
 * The real process with server.workers (WORKERS=2): the workers share the gRPC
 * port and take connections in turn; the primary's one ops port aggregates
 * /metrics, is ready only while every worker serves, and sends DELETE /cache to
 * every worker; SIGHUP reaches every worker; a killed worker is replaced; SIGTERM
 * drains them all and exits 0. And the start-up failures a cluster shares with
 * a single process.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';
import {
  ensureBuilt,
  httpGet,
  deleteCache,
  logLines,
  reloadCounts,
  run,
  samples,
  serving,
  tryConnect,
  waitFor,
  within,
  type HttpAnswer,
  type LogLine,
  type Proc,
} from '../support/service-process.js';

t.before(ensureBuilt);

const root = mkdtempSync(join(tmpdir(), 'authz-workers-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const ADMIN = 'workers-admin-token-0123456789';
const TOKENS = Array.from({ length: 40 }, (_, i) => `workers-token-${i}-0123456789abcdef`);
const SHARED = 'workers-shared-token-0123456789abc';

function config(url: string, identityHeader: string, extra = ''): string {
  return `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
  admin: {host: 127.0.0.1, port: 0}
  shutdownTimeout: 2000
log:
  level: info
admin:
  token: ${ADMIN}
endpoints:
  - name: as
    url: ${url}
    authMethod: none
${extra}policies:
  - name: default
    identityHeader: ${identityHeader}
`;
}

/** Ask the admin port to drop a token's cached answers. */

interface Answered {
  worker: number;
  allowed: boolean;
  headers: Record<string, string>;
}

/**
 * One Check on a connection of its own (the primary hands each new connection
 * to the next worker), and the worker that answered, read from its decision line.
 */
async function checkOnNewConnection(proc: Proc, grpcPort: number, token: string, requestId: string): Promise<Answered> {
  const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
  try {
    const answer = summarize(
      await envoy.check({ headers: { authorization: `Bearer ${token}`, 'x-request-id': requestId }, timeoutMs: 5000 }),
    );
    const line = await waitFor(
      () => logLines(proc.stdout()).find((l) => l.msg === 'decision' && l.requestId === requestId),
      3000,
      `the decision line of ${requestId}`,
    );
    return { worker: line.worker as number, allowed: answer.allowed, headers: answer.headers };
  } finally {
    envoy.close();
  }
}

let requests = 0;
/** Checks of `token` on new connections until every worker in `workers` answered one (bounded). */
async function checkOnEvery(proc: Proc, grpcPort: number, token: string, workers: number[]): Promise<Map<number, Answered>> {
  const seen = new Map<number, Answered>();
  for (let i = 0; i < 12 && seen.size < workers.length; i++) {
    const answered = await checkOnNewConnection(proc, grpcPort, token, `req-${(requests += 1)}`);
    if (!seen.has(answered.worker)) seen.set(answered.worker, answered);
  }
  if (seen.size < workers.length) throw new Error(`only workers ${[...seen.keys()].join(', ')} answered in 12 connections`);
  return seen;
}

const linesOf = (proc: Proc, msg: string): LogLine[] => logLines(proc.stdout()).filter((line) => line.msg === msg);
const sum = (map: Map<string, number>, prefix: string) =>
  [...map].filter(([name]) => name.startsWith(prefix)).reduce((total, [, value]) => total + value, 0);

t.test('WORKERS=2: shared port, aggregated ops port, eviction, SIGHUP, a replaced worker, SIGTERM', async (t) => {
  const fake: FakeAuthorizationServer = await startFakeAuthorizationServer(
    answerByToken(Object.fromEntries([...TOKENS, SHARED].map((token) => [token, { sub: `sub-${token.slice(0, 16)}` }]))),
  );
  t.teardown(() => fake.close());
  // The file is reached through a symlink from a folder of its own: writing the target is not
  // seen by the watcher (which watches the link's folder), so only SIGHUP reloads it.
  const real = join(root, 'real');
  const linked = join(root, 'linked');
  mkdirSync(real);
  mkdirSync(linked);
  writeFileSync(join(real, 'config.yaml'), config(fake.url, 'x-auth-subject'));
  const path = join(linked, 'config.yaml');
  symlinkSync(join(real, 'config.yaml'), path);

  const proc = run(t, ['--config', path], { WORKERS: '2' });
  const { grpcPort, opsPort, adminPort } = await serving(proc, 20_000);
  const servingLine = linesOf(proc, 'serving')[0]!;
  t.equal(servingLine.workers, 2, 'the serving line says 2 workers (from WORKERS)');
  const started = await waitFor(() => (linesOf(proc, 'worker serving').length === 2 ? linesOf(proc, 'worker serving') : undefined), 3000, 'two worker lines');
  t.same(started.map((l) => l.worker).sort(), [1, 2], 'workers 1 and 2 logged that they serve');
  t.ok(started.every((l) => l.grpcPort === grpcPort), `both on the gRPC port the primary reports (${grpcPort}), though the file says 0`);
  t.not(started[0]!.pid, started[1]!.pid, 'in two processes');
  t.same(await httpGet(opsPort, '/readyz'), { status: 200, body: 'ready\n' }, '/readyz 200: every worker serves');
  t.same(await httpGet(opsPort, '/healthz'), { status: 200, body: 'ok\n' }, '/healthz 200');

  await t.test('Checks over several connections reach both workers; /metrics adds them up', async (t) => {
    const answered: Answered[] = [];
    for (const token of TOKENS.slice(0, 6)) answered.push(await checkOnNewConnection(proc, grpcPort, token, `req-${(requests += 1)}`));
    t.ok(answered.every((a) => a.allowed), 'every Check allowed');
    const byWorker = [1, 2].map((w) => answered.filter((a) => a.worker === w).length);
    t.ok(byWorker[0]! > 0 && byWorker[1]! > 0, `six connections, answered by worker 1: ${byWorker[0]}, worker 2: ${byWorker[1]}`);

    const metrics = samples((await httpGet(opsPort, '/metrics')).body);
    t.equal(
      metrics.get('authz_check_decisions_total{decision="allow",reason="ok",policy="default",transport="grpc"}'),
      6,
      'authz_check_decisions_total is the sum over the workers',
    );
    t.equal(metrics.get('authz_check_duration_seconds_count'), 6, 'histograms merge: count 6');
    t.equal(metrics.get('authz_check_duration_seconds_bucket{le="+Inf"}'), 6, 'and their buckets add up');
    t.equal(metrics.get('authz_introspection_requests_total{endpoint="as",outcome="active"}'), 6, 'introspections too');
    t.equal(metrics.get('authz_cache_entries'), 6, 'the cache entries gauge sums the workers\' caches');
    t.equal(metrics.get('authz_workers_serving'), 2, 'authz_workers_serving 2');
    t.equal(metrics.get('authz_worker_restarts_total'), 0, 'no restarts');
    t.equal(metrics.get(`authz_build_info{version="${servingLine.version as string}",node="${process.version}"}`), 1, 'build info stays 1');
    t.equal(metrics.get('authz_introspection_circuit_state{endpoint="as"}'), 0, 'circuit state: the worst of the workers, closed');
    t.same(await reloadCounts(opsPort), { success: 0, failure: 0 }, 'no reloads');
    for (const worker of ['1', '2', 'primary']) {
      t.ok(metrics.has(`process_cpu_user_seconds_total{worker="${worker}"}`), `process metrics labelled worker="${worker}"`);
    }
    t.notOk(metrics.has('process_cpu_user_seconds_total'), 'and never added up');
  });

  await t.test('DELETE /cache reaches both workers and answers the total', async (t) => {
    const before = fake.requests.filter((r) => r.body.get('token') === SHARED).length;
    const answered = await checkOnEvery(proc, grpcPort, SHARED, [1, 2]);
    t.ok([...answered.values()].every((a) => a.allowed), 'allowed at both');
    const introspected = fake.requests.filter((r) => r.body.get('token') === SHARED).length - before;
    t.equal(introspected, 2, 'each worker has its own cache: the token was introspected once per worker');
    t.same(await deleteCache(adminPort!, ADMIN, { token: SHARED }), { status: 200, body: '{"evicted":2}\n' }, 'evicted: one endpoint at each of the 2 workers');
    t.same(await deleteCache(adminPort!, ADMIN, { token: SHARED }), { status: 200, body: '{"evicted":0}\n' }, 'gone everywhere: 0 the second time');
    const metrics = samples((await httpGet(opsPort, '/metrics')).body);
    t.equal(metrics.get('authz_cache_admin_evictions_total{scope="token"}'), 2, 'the primary counted the two admin requests once each');
  });

  await t.test('SIGHUP reloads every worker; a bad file changes none', async (t) => {
    writeFileSync(join(real, 'config.yaml'), config(fake.url, 'x-auth-user'));
    proc.child.kill('SIGHUP');
    const reloaded = await waitFor(() => linesOf(proc, 'configuration reloaded')[0], 5000, 'the reload');
    t.match(reloaded, { trigger: 'SIGHUP' }, 'reloaded on SIGHUP');
    t.same(await reloadCounts(opsPort), { success: 1, failure: 0 }, 'counted once for the service, not once per worker');
    const answered = await checkOnEvery(proc, grpcPort, TOKENS[10]!, [1, 2]);
    for (const [worker, answer] of answered) t.equal(answer.headers['x-auth-user'], `sub-${TOKENS[10]!.slice(0, 16)}`, `worker ${worker} uses the new identityHeader`);

    writeFileSync(join(real, 'config.yaml'), config(fake.url, 'x-auth-other', '    bogusKey: 1\n'));
    proc.child.kill('SIGHUP');
    const rejected = await waitFor(() => linesOf(proc, 'configuration rejected; the previous one stays in force')[0], 5000, 'the rejection');
    t.match(rejected.err, /endpoints\[0\]\.bogusKey: unknown option/, 'the primary rejected it, naming the key');
    t.same(await reloadCounts(opsPort), { success: 1, failure: 1 }, 'one failure');
    const after = await checkOnEvery(proc, grpcPort, TOKENS[11]!, [1, 2]);
    for (const [worker, answer] of after) t.ok('x-auth-user' in answer.headers, `worker ${worker} still on the previous configuration`);
    writeFileSync(join(real, 'config.yaml'), config(fake.url, 'x-auth-user'));
  });

  await t.test('a killed worker is replaced; readiness shows it meanwhile; Checks go on', async (t) => {
    const victim = linesOf(proc, 'worker serving').find((l) => l.worker === 1)!;
    process.kill(victim.pid as number, 'SIGKILL');
    const notReady = await waitFor(async () => {
      const seen = await httpGet(opsPort, '/readyz');
      return seen.status === 503 ? seen : undefined;
    }, 3000, '/readyz while worker 1 is down');
    t.same(notReady, { status: 503, body: 'not ready: 1 of 2 workers serving\n' }, '/readyz 503 while a worker is down');
    const exited = await waitFor(() => linesOf(proc, 'worker exited; restarting it')[0], 3000, 'the exit line');
    t.match(exited, { level: 'error', worker: 1, pid: victim.pid, signal: 'SIGKILL' }, 'the primary logged the death');
    t.ok((exited.restartInMs as number) >= 100, `and restarts it after ${exited.restartInMs as number} ms`);
    const answered = await checkOnNewConnection(proc, grpcPort, TOKENS[20]!, `req-${(requests += 1)}`);
    t.ok(answered.allowed, `a Check during the restart is answered (by worker ${answered.worker})`);

    const replaced = await waitFor(
      () => linesOf(proc, 'worker serving').find((l) => l.worker === 1 && l.pid !== victim.pid),
      15_000,
      'the new worker 1',
    );
    t.equal(replaced.grpcPort, grpcPort, 'the new worker serves on the same port');
    await waitFor(async () => ((await httpGet(opsPort, '/readyz')).status === 200 ? true : undefined), 3000, 'ready again');
    const metrics = samples((await httpGet(opsPort, '/metrics')).body);
    t.equal(metrics.get('authz_worker_restarts_total'), 1, 'authz_worker_restarts_total 1');
    t.equal(metrics.get('authz_workers_serving'), 2, 'both serving again');
    const both = await checkOnEvery(proc, grpcPort, TOKENS[21]!, [1, 2]);
    t.equal(both.get(1)?.headers['x-auth-user'], `sub-${TOKENS[21]!.slice(0, 16)}`, 'the new worker 1 runs the reloaded configuration');
    t.ok(both.get(2)?.allowed, 'worker 2 kept serving');
    t.ok(sum(metrics, 'authz_check_decisions_total') > 0, 'the decision counts of the surviving worker are still there');
  });

  await t.test('SIGTERM drains every worker and exits 0', async (t) => {
    const pids = linesOf(proc, 'worker serving').map((l) => l.pid as number);
    proc.child.kill('SIGTERM');
    const exit = await within(proc.exited, 8000, 'exit');
    t.same(exit, { code: 0, signal: null }, 'exit 0');
    const drained = linesOf(proc, 'worker draining').map((l) => l.worker).sort();
    t.same(drained, [1, 2], 'both workers drained');
    t.ok(linesOf(proc, 'stopped').length === 1, 'the primary logged stopped');
    t.equal(await tryConnect(grpcPort), 'ECONNREFUSED', 'the gRPC port is closed');
    t.equal(await tryConnect(opsPort), 'ECONNREFUSED', 'and the ops port');
    for (const pid of pids) {
      t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker process ${pid} is gone`);
    }
    t.equal(proc.stderr(), '', 'nothing on stderr');
  });
});

t.test('with workers, a gRPC port in use: exit 2, one stderr line naming server.grpc.port', async (t) => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as AddressInfo).port;
  const path = join(root, 'in-use.yaml');
  writeFileSync(path, `server:
  grpc: {host: 127.0.0.1, port: ${port}}
  ops: {host: 127.0.0.1, port: 0}
  workers: 3
endpoints:
  - name: as
    url: http://127.0.0.1:9/introspect
    authMethod: none
`);
  const proc = run(t, ['--config', path]);
  const exit = await within(proc.exited, 20_000, 'exit');
  t.same(exit, { code: 2, signal: null }, 'exit 2');
  const lines = proc.stderr().trimEnd().split('\n');
  t.same(lines, [`error: server.grpc.port: 127.0.0.1:${port} is already in use`], 'one line, as without workers');
  t.notOk(linesOf(proc, 'serving').length > 0, 'never said serving');
});

t.test('workers that keep dying: after 10 restarts within a minute the service drains and exits 1', { timeout: 120_000 }, async (t) => {
  const dir = join(root, 'dying');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'config.yaml');
  writeFileSync(path, config('http://127.0.0.1:9/introspect', 'x-auth-user', '').replace(/^server:\n/, 'server:\n  workers: 2\n'));
  const proc = run(t, ['--config', path]);
  await serving(proc, 20_000);
  // Kill every worker as soon as it serves, as a crash loop would, until the primary gives up.
  const killed = new Set<number>();
  const until = Date.now() + 100_000;
  while (proc.child.exitCode === null && proc.child.signalCode === null && Date.now() < until && killed.size < 30) {
    for (const line of linesOf(proc, 'worker serving')) {
      const pid = line.pid as number;
      if (killed.has(pid)) continue;
      killed.add(pid);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const exit = await within(proc.exited, 15_000, 'exit');
  t.same(exit, { code: 1, signal: null }, 'exit 1: the orchestrator restarts the pod');
  const restarts = linesOf(proc, 'worker exited; restarting it');
  t.equal(restarts.length, 10, 'ten restarts');
  t.match(linesOf(proc, 'workers keep dying; giving up'), [{ level: 'fatal', restarts: 10 }], 'the eleventh death gives up, once');
  const messages = logLines(proc.stdout()).map((line) => line.msg);
  t.ok(messages.indexOf('draining') > messages.indexOf('workers keep dying; giving up'), 'then the service drains');
  t.equal(messages.at(-1), 'stopped', 'and says stopped last');
  for (const pid of linesOf(proc, 'worker serving').map((l) => l.pid as number)) {
    t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} is gone`);
  }
});
