/**
 * The real process with two workers and a real redis-server, through outages:
 * an admin eviction is published once per replica however many workers it
 * has, answers 202 while Redis is down, and closes every worker's
 * staleIfError window; while the authorization server is down each worker
 * serves the answer it held, for staleIfError past its lifetime.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t from 'tap';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { startRedisServer } from '../support/redis-server.js';
import { deleteCache, ensureBuilt, logLines, run, serving, sleep, waitFor, type HttpAnswer, type Proc } from '../support/service-process.js';

t.before(ensureBuilt);

const root = mkdtempSync(join(tmpdir(), 'authz-workers-outage-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const ADMIN = 'workers-outage-admin-token-0123456789';
const TOKEN = 'workers-outage-token-0123456789abcdef';


let requests = 0;
/** Checks on new connections (the primary hands each to the next worker) until both workers answered one; by worker. */
async function checkOnBoth(proc: Proc, grpcPort: number): Promise<Map<number, boolean>> {
  const seen = new Map<number, boolean>();
  for (let i = 0; i < 12 && seen.size < 2; i++) {
    const requestId = `outage-${(requests += 1)}`;
    const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
    try {
      const answer = summarize(await envoy.check({ headers: { authorization: `Bearer ${TOKEN}`, 'x-request-id': requestId }, timeoutMs: 5000 }));
      const line = await waitFor(
        () => logLines(proc.stdout()).find((l) => l.msg === 'decision' && l.requestId === requestId),
        3000,
        `the decision line of ${requestId}`,
      );
      if (!seen.has(line.worker as number)) seen.set(line.worker as number, answer.allowed);
    } finally {
      envoy.close();
    }
  }
  if (seen.size < 2) throw new Error(`only workers ${[...seen.keys()].join(', ')} answered in 12 connections`);
  return seen;
}

t.test('WORKERS=2 with Redis: one eviction message per replica, 202 while Redis is down, stale windows closed by it', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const fake = await startFakeAuthorizationServer(answerByToken({ [TOKEN]: { sub: 'alice' } }));
  t.teardown(() => fake.close());
  const listener = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  listener.on('error', () => {});
  t.teardown(() => listener.disconnect());
  const published: string[] = [];
  listener.on('message', (_channel: string, message: string) => published.push(message));
  await listener.subscribe('outage:evictions');

  const path = join(root, 'config.yaml');
  writeFileSync(
    path,
    `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
  admin: {host: 127.0.0.1, port: 0}
  shutdownTimeout: 2000
  workers: 2
log:
  level: info
admin:
  token: ${ADMIN}
cache:
  validatedTokenTTL: 1
redis:
  url: ${redis.url}
  keySecret: workers-outage-key-secret-0123456789abcdef
  keyPrefix: 'outage:'
endpoints:
  - name: as
    url: ${fake.url}
    authMethod: none
    retries: 0
    staleIfError: 120
policies:
  - name: default
`,
  );
  const proc = run(t, ['--config', path]);
  const { grpcPort, opsPort, adminPort } = await serving(proc, 20_000);

  const up = await checkOnBoth(proc, grpcPort);
  t.same([...up.values()], [true, true], 'allowed at both workers');

  // Past validatedTokenTTL, with the authorization server down: each worker serves what it held.
  await sleep(1200);
  await fake.setAvailability('refuse');
  const down = await checkOnBoth(proc, grpcPort);
  t.same([...down.values()], [true, true], 'both workers serve the expired answer within staleIfError');
  t.ok(logLines(proc.stdout()).some((l) => l.msg === 'decision' && l.cache === 'stale'), 'the decision says cache: stale');
  t.ok(logLines(proc.stdout()).some((l) => String(l.msg).includes('staleIfError') && l.level === 'warn'), 'and a warn line says so');

  // How many workers still count it as held depends on whether its entry had expired there (a stale
  // answer is kept apart, and not counted): 1 or 2 on a loaded machine. What matters is below: both deny.
  const dropped = await deleteCache(adminPort!, ADMIN, { token: TOKEN });
  t.equal(dropped.status, 200, 'evicted, and the cluster-wide part done');
  t.match(JSON.parse(dropped.body), { evicted: Number }, dropped.body);
  t.ok(await waitFor(() => (published.length > 0 ? true : undefined), 3000, 'the eviction message'));
  await sleep(300);
  t.equal(published.length, 1, `one message for the replica, not one per worker (${published.length})`);
  const evicted = await checkOnBoth(proc, grpcPort);
  t.same([...evicted.values()], [false, false], 'the eviction closed the stale window at both workers');

  await redis.kill();
  const pending = await deleteCache(adminPort!, ADMIN, { token: TOKEN });
  t.equal(pending.status, 202, 'Redis down: the cluster-wide part did not complete');
  t.match(JSON.parse(pending.body), { evicted: 0, shared: 'pending' });
});
