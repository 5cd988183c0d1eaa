// The shared tier on Redis that survives a node loss: a Sentinel-managed
// master with a replica, and a three-master Redis Cluster with replicas, from
// the Debian packages on loopback ports. Two service instances share each; a
// failover happens in the middle of the run. Checks keep answering (from
// memory or the endpoint) while Redis re-elects, an evicted token is never
// allowed again, and the tier is used again once the new master serves.
// Skipped, saying why, when redis-sentinel (or redis-server, redis-cli) is absent.
import t, { type Test } from 'tap';
import { Cluster, Redis } from 'ioredis';
import { request } from 'undici';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { missing, startClusterSet, startSentinelSet } from '../support/redis-topologies.js';

const ADMIN = 'topologies-admin-token-0123456789';
const KEY_SECRET = 'topologies-key-secret-0123456789-abcdef';

interface Instance {
  app: App;
  envoy: EnvoyClient;
  ops: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(condition: () => Promise<boolean> | boolean, ms = 5000, step = 20): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(step);
  }
}

async function fakeServer(t: Test): Promise<{ fake: FakeAuthorizationServer; active: Set<string> }> {
  const active = new Set<string>();
  const fake = await startFakeAuthorizationServer((req) => {
    const token = req.body.get('token') ?? '';
    return { json: active.has(token) ? { active: true, sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 } : { active: false } };
  });
  t.teardown(() => fake.close());
  return { fake, active };
}

async function instance(t: Test, fake: FakeAuthorizationServer, redis: Record<string, unknown>): Promise<Instance> {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
      admin: { token: ADMIN },
      cache: { negativeTTL: 0 },
      endpoints: [{ name: 'one', url: fake.url, authMethod: 'none' }, { name: 'two', url: `${fake.url}?two`, authMethod: 'none' }],
      policies: [{ name: 'p', endpoint: 'one' }, { name: 'q', endpoint: 'two' }],
      defaultPolicy: 'p',
      redis: { keySecret: KEY_SECRET, keyPrefix: 'topo:', timeout: 200, ...redis },
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  if (!(await eventually(() => app.authorizer.shared?.connected === true, 10_000))) throw new Error('no connection to Redis');
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy, ops: `http://127.0.0.1:${app.admin!.port}` };
}

const check = (at: Instance, token: string, policy = 'p') =>
  at.envoy.check({ headers: { authorization: `Bearer ${token}` }, contextExtensions: { policy }, timeoutMs: 5000 }).then(summarize);

async function evict(at: Instance, token: string | null): Promise<number> {
  const response = await request(`${at.ops}/cache${token === null ? '?all=true' : ''}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${ADMIN}`, ...(token === null ? {} : { 'content-type': 'application/json' }) },
    body: token === null ? undefined : JSON.stringify({ token }),
  });
  await response.body.text();
  return response.statusCode;
}

const token = (name: string) => `topo-${name}-${'B'.repeat(24)}`;

/**
 * Two instances share the tier: an answer a introspected is read by b from
 * Redis, an eviction denies on both. Each try takes a new token: right after a
 * reconnection every entry is refused for the clock skew allowed (2 s), since
 * evictions may have been missed meanwhile.
 */
async function sharing(t: Test, a: Instance, b: Instance, active: Set<string>, introspections: () => number, name: string): Promise<void> {
  let tries = 0;
  let shared = '';
  t.ok(
    await eventually(async () => {
      const next = token(`${name}${(tries += 1)}`);
      active.add(next);
      if (!(await check(a, next)).allowed || !(await check(a, next, 'q')).allowed) return false;
      await sleep(50);
      const before = introspections();
      if (!(await check(b, next)).allowed || !(await check(b, next, 'q')).allowed) return false;
      shared = next;
      return introspections() === before;
    }, 10_000, 200),
    `b answered from Redis, at both endpoints (try ${tries})`,
  );
  active.delete(shared);
  t.equal(await evict(a, shared), 200);
  t.ok(await eventually(async () => !(await check(b, shared)).allowed && !(await check(b, shared, 'q')).allowed), 'denied at b, at both endpoints');
}

/** Checks of `tokens` on both instances, back to back, until `done` resolves: what they answered. */
async function checkThroughout(a: Instance, b: Instance, tokens: string[], done: Promise<void>): Promise<{ allowed: number; denied: number }> {
  let finished = false;
  void done.finally(() => (finished = true));
  const tally = { allowed: 0, denied: 0 };
  for (let round = 0; round < 10_000 && !finished; round++) {
    for (const at of [a, b]) {
      for (const name of tokens) {
        const answer = await check(at, name);
        if (answer.allowed) tally.allowed += 1;
        else tally.denied += 1;
      }
    }
    await sleep(10);
  }
  return tally;
}

t.test('Sentinel: one master, one replica; a failover in the middle of the run', async (t) => {
  const why = missing('sentinel');
  if (why) {
    t.comment(`skipped: ${why}`);
    t.pass('skipped: redis-sentinel is not installed', { skip: why });
    return;
  }
  const set = await startSentinelSet();
  t.teardown(() => set.stop());
  const { fake, active } = await fakeServer(t);
  const redis = { sentinels: [`${set.sentinel.host}:${set.sentinel.port}`], masterName: set.masterName };
  const a = await instance(t, fake, redis);
  const b = await instance(t, fake, redis);
  const introspections = () => fake.requests.length;

  await sharing(t, a, b, active, introspections, 'before');

  const kept = token('kept');
  const revoked = token('revoked');
  active.add(kept).add(revoked);
  for (const at of [a, b]) {
    t.ok((await check(at, kept)).allowed);
    t.ok((await check(at, revoked)).allowed);
  }
  const oldMaster = set.masterPort();
  const failover = set.failover();
  // While the master is gone: Checks answer from memory or the endpoint, never an error.
  const during = checkThroughout(a, b, [kept], failover);
  active.delete(revoked);
  const status = await evict(a, revoked);
  t.ok(status === 200 || status === 202, `an eviction during the failover answers ${status}`);
  await failover;
  const tally = await during;
  t.equal(tally.denied, 0, `every Check of the valid token allowed during the failover (${tally.allowed})`);
  t.not(set.masterPort(), oldMaster, 'the replica is master now');

  t.ok(await eventually(() => a.app.authorizer.shared!.connected && b.app.authorizer.shared!.connected, 15_000), 'both follow the new master');
  t.ok(await eventually(async () => !(await check(b, revoked)).allowed && !(await check(a, revoked)).allowed, 10_000), 'the evicted token is denied at both');
  t.ok(await eventually(() => a.app.authorizer.shared!.pendingEvictions.keys === 0, 10_000), 'nothing left to send');
  for (let i = 0; i < 5; i++) t.notOk((await check(i % 2 ? a : b, revoked)).allowed, 'and stays denied');
  t.ok((await check(a, kept)).allowed && (await check(b, kept)).allowed, 'the valid token is still allowed');

  await sharing(t, a, b, active, introspections, 'after');
});

t.test('Cluster: three masters with replicas; keys across slots, evict all, a failover in the middle of the run', async (t) => {
  const why = missing('cluster');
  if (why) {
    t.comment(`skipped: ${why}`);
    t.pass('skipped: redis-server or redis-cli is not installed', { skip: why });
    return;
  }
  const set = await startClusterSet();
  t.teardown(() => set.stop());
  const { fake, active } = await fakeServer(t);
  const redis = { clusterNodes: set.nodes.map(({ host, port }) => `${host}:${port}`) };
  const a = await instance(t, fake, redis);
  const b = await instance(t, fake, redis);
  const introspections = () => fake.requests.length;
  const inspect = new Cluster(set.nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  inspect.on('error', () => {});
  t.teardown(() => inspect.disconnect());
  const entries = async () => {
    const names: string[] = [];
    for (const node of inspect.nodes('master')) names.push(...(await (node as Redis).keys('topo:*')));
    return names;
  };

  await sharing(t, a, b, active, introspections, 'before');

  // Entries on several masters; evict all reaches every one.
  const many = Array.from({ length: 12 }, (_, i) => token(`many${i}`));
  for (const name of many) {
    active.add(name);
    t.ok((await check(a, name)).allowed);
  }
  t.ok(await eventually(async () => (await entries()).length >= 12), 'written to the cluster');
  const slots = new Set(await Promise.all((await entries()).map((name) => inspect.cluster('KEYSLOT', name))));
  t.ok(slots.size > 1, `spread over ${slots.size} slots`);
  t.equal(await evict(b, null), 200);
  t.ok(await eventually(async () => (await entries()).length === 0), 'evict all emptied every master');
  for (const name of many) active.delete(name);
  t.ok(await eventually(async () => !(await check(a, many[0]!)).allowed), 'and a dropped its memory');

  const kept = token('kept');
  const revoked = token('revoked');
  active.add(kept).add(revoked);
  for (const at of [a, b]) {
    t.ok((await check(at, kept)).allowed);
    t.ok((await check(at, revoked)).allowed);
  }
  const [entry] = await entries();
  const slot = Number(await inspect.cluster('KEYSLOT', entry!));
  const failover = set.failover(slot);
  const during = checkThroughout(a, b, [kept], failover);
  active.delete(revoked);
  const status = await evict(a, revoked);
  t.ok(status === 200 || status === 202, `an eviction during the failover answers ${status}`);
  await failover;
  const tally = await during;
  t.equal(tally.denied, 0, `every Check of the valid token allowed during the failover (${tally.allowed})`);
  t.ok(await eventually(async () => !(await check(b, revoked)).allowed && !(await check(a, revoked)).allowed, 10_000), 'the evicted token is denied at both');
  t.ok(await eventually(() => a.app.authorizer.shared!.pendingEvictions.keys === 0, 15_000), 'nothing left to send');
  for (let i = 0; i < 5; i++) t.notOk((await check(i % 2 ? a : b, revoked)).allowed, 'and stays denied');

  t.ok(await eventually(() => a.app.authorizer.shared!.connected && b.app.authorizer.shared!.connected, 15_000), 'both connected after the failover');
  await sharing(t, a, b, active, introspections, 'after');
});
