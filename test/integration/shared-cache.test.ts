// Two service instances sharing a real redis-server (the Debian package,
// started here on a free loopback port): one introspection between them, an
// admin eviction on one denies on both at once, Redis dying never fails a
// Check, and nothing in Redis is readable.
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

const ADMIN = 'admin-token-Zx81-please-rotate';
const KEY_SECRET = 'shared-cache-key-secret-0123456789-abcdef';
const SUBJECT = 'subject-Qw7-alice';
const SCOPE_VALUE = 'scope-Zp4-payroll';
const CLIENT = 'client-Ty2-frontend';

interface Instance {
  app: App;
  envoy: EnvoyClient;
  ops: string;
}

interface Harness {
  redis: RedisServer;
  fake: FakeAuthorizationServer;
  active: Set<string>;
  a: Instance;
  b: Instance;
  /** A plain client to look at what Redis holds. */
  inspect: Redis;
  introspections(): number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll until `condition` holds, at most `ms`; whether it did. */
async function eventually(condition: () => Promise<boolean> | boolean, ms = 2000, step = 10): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(step);
  }
}

async function startInstance(t: Test, fake: FakeAuthorizationServer, redisUrl: string | null): Promise<Instance> {
  const config = buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
      admin: { token: ADMIN },
      ...(redisUrl ? { redis: { url: redisUrl, keySecret: KEY_SECRET, keyPrefix: 'test:' } } : {}),
      endpoints: [{ name: 'one', url: fake.url, authMethod: 'none' }],
    },
    'test',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  if (redisUrl && !(await eventually(() => app.authorizer.shared?.connected === true))) throw new Error('no connection to Redis');
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  return { app, envoy, ops: `http://127.0.0.1:${app.admin!.port}` };
}

async function start(t: Test, withRedis = true): Promise<Harness> {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const active = new Set<string>();
  const fake = await startFakeAuthorizationServer((req) => {
    const token = req.body.get('token') ?? '';
    return {
      json: active.has(token)
        ? { active: true, sub: SUBJECT, scope: SCOPE_VALUE, client_id: CLIENT, exp: Math.floor(Date.now() / 1000) + 3600 }
        : { active: false },
    };
  });
  t.teardown(() => fake.close());
  const a = await startInstance(t, fake, withRedis ? redis.url : null);
  const b = await startInstance(t, fake, withRedis ? redis.url : null);
  const inspect = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  inspect.on('error', () => {});
  t.teardown(() => inspect.disconnect());
  return { redis, fake, active, a, b, inspect, introspections: () => fake.requests.length };
}

const check = (instance: Instance, token: string) =>
  instance.envoy.check({ headers: { authorization: `Bearer ${token}` } }).then(summarize);

async function evict(instance: Instance, token: string | null): Promise<number> {
  const response = await request(`${instance.ops}/cache${token === null ? '?all=true' : ''}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${ADMIN}`, ...(token === null ? {} : { 'content-type': 'application/json' }) },
    body: token === null ? undefined : JSON.stringify({ token }),
  });
  await response.body.text();
  return response.statusCode;
}

const token = (name: string) => `tok-${name}-${'A'.repeat(24)}`;

async function keyCount(h: Harness): Promise<number> {
  return (await h.inspect.keys('test:*')).length;
}

async function metric(instance: Instance, name: string): Promise<string> {
  return (await instance.app.metrics.registry.getSingleMetricAsString(name)) ?? '';
}

t.test('two instances introspect a token once between them', async (t) => {
  const h = await start(t);
  const alice = token('alice');
  h.active.add(alice);
  t.ok((await check(h.a, alice)).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 1), 'the answer reached Redis');
  t.ok((await check(h.b, alice)).allowed);
  t.equal(h.introspections(), 1, 'the second instance read it from Redis');
  t.match(await metric(h.b, 'authz_shared_cache_lookups_total'), /result="hit"} 1/);
  t.match(await metric(h.a, 'authz_shared_cache_lookups_total'), /result="miss"} 1/);

  // Inactive answers are shared too (negativeTTL).
  t.notOk((await check(h.a, token('nobody'))).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 2));
  t.notOk((await check(h.b, token('nobody'))).allowed);
  t.equal(h.introspections(), 2);
});

t.test('an eviction on one instance denies on both within 100 ms', async (t) => {
  const h = await start(t);
  const alice = token('alice');
  const bob = token('bob');
  h.active.add(alice).add(bob);
  for (const instance of [h.a, h.b, h.a, h.b]) {
    t.ok((await check(instance, alice)).allowed);
    t.ok((await check(instance, bob)).allowed);
  }
  t.equal(h.introspections(), 2, 'both instances hold both answers');

  h.active.delete(alice);
  const started = Date.now();
  t.equal(await evict(h.a, alice), 200);
  t.ok(await eventually(async () => !(await check(h.b, alice)).allowed, 100, 5), 'denied on the other instance');
  t.notOk((await check(h.a, alice)).allowed, 'denied on the evicting one');
  t.comment(`eviction seen by the other instance after ${Date.now() - started} ms`);
  t.ok((await check(h.b, bob)).allowed, 'other tokens stay');

  h.active.delete(bob);
  t.equal(await evict(h.b, null), 200);
  t.ok(await eventually(async () => !(await check(h.a, bob)).allowed, 100, 5), 'evict all reaches the other instance');
});

t.test('Redis killed mid-run: Checks go on through introspection; back: used again', async (t) => {
  const h = await start(t);
  const early = token('early');
  h.active.add(early);
  t.ok((await check(h.a, early)).allowed);
  t.ok(await eventually(async () => (await keyCount(h)) === 1));
  t.ok((await check(h.b, early)).allowed);
  t.equal(h.introspections(), 1);

  await h.redis.kill();
  for (let i = 0; i < 10; i++) {
    const name = token(`down${i}`);
    h.active.add(name);
    const began = performance.now();
    t.ok((await check(i % 2 ? h.a : h.b, name)).allowed, `check ${i} while Redis is down`);
    t.ok(performance.now() - began < 500, 'not held up by Redis');
  }
  t.equal(h.introspections(), 11, 'each answered by the endpoint');
  t.ok((await check(h.b, early)).allowed, 'the in-process tier still serves');
  t.equal(h.introspections(), 11);
  t.match(await metric(h.a, 'authz_shared_cache_lookups_total'), /result="(error|skipped)"} [1-9]/);

  await h.redis.restart();
  // Both instances reconnect (at most a second apart) and clear their in-process tier, which may have missed evictions.
  const before = h.introspections();
  t.ok(
    await eventually(async () => {
      const probe = token(`probe${Date.now()}`);
      h.active.add(probe);
      await check(h.a, probe);
      if (!(await eventually(async () => (await keyCount(h).catch(() => 0)) > 0, 100))) return false;
      const calls = h.introspections();
      await check(h.b, probe);
      return h.introspections() === calls;
    }, 5000, 100),
    'the shared tier is used again',
  );
  t.ok(h.introspections() > before);
  const again = h.introspections();
  t.ok((await check(h.b, early)).allowed);
  t.equal(h.introspections(), again + 1, 'the reconnected instance dropped its in-process answers');
});

t.test('nothing in Redis is readable: no token, subject or claim value', async (t) => {
  const h = await start(t);
  const tokens = [token('alice'), token('bob'), token('carol')];
  for (const value of tokens) h.active.add(value);
  for (const value of [...tokens, token('inactive')]) {
    await check(h.a, value);
    await check(h.b, value);
  }
  t.ok(await eventually(async () => (await keyCount(h)) === 4));
  const needles = [...tokens, token('inactive'), SUBJECT, SCOPE_VALUE, CLIENT, 'alice', 'bob', 'carol', 'sub', 'scope', 'active'];
  const keys = await h.inspect.keys('*');
  t.equal(keys.length, 4);
  for (const key of keys) {
    t.match(key, /^test:[0-9a-f]{64}$/);
    const value = (await h.inspect.getBuffer(key))!;
    const pttl = await h.inspect.pttl(key);
    t.ok(pttl > 0, 'every key expires');
    for (const needle of needles) {
      t.notOk(key.includes(needle), `key has no ${needle}`);
      t.notOk(value.includes(Buffer.from(needle)), `value has no ${needle}`);
      t.notOk(value.includes(Buffer.from(needle).toString('base64')), `value has no base64 ${needle}`);
    }
  }
});

t.test('measured: introspections with two instances, with and without the shared tier', async (t) => {
  const count = async (withRedis: boolean) => {
    const h = await start(t, withRedis);
    for (let i = 0; i < 20; i++) {
      const name = token(`m${i}`);
      h.active.add(name);
      await check(h.a, name);
      if (withRedis) await eventually(async () => (await keyCount(h)) === i + 1, 500, 2);
      await check(h.b, name);
    }
    return h.introspections();
  };
  const without = await count(false);
  const withShared = await count(true);
  t.comment(`20 tokens, each checked on both of 2 instances: ${without} introspections without Redis, ${withShared} with`);
  t.equal(without, 40);
  t.equal(withShared, 20);
});
